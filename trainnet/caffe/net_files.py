"""What pycaffe's Net reads and writes: weights in (``copy_from``, ``load_hdf5``) and out
(``save`` as a caffemodel Caffe loads, ``save_hdf5``), through trainnet's checked readers."""

from __future__ import annotations

import warnings
from pathlib import Path

from trainnet.formats.caffemodel import trainnet_to_caffe, write_caffemodel
from trainnet.formats.caffemodel_h5 import write_caffemodel_h5
from trainnet.solver.snapshot import save_tensors
from trainnet.solver.weights import FINETUNE, WeightsReport, load_weights


class NetFiles:
    """Mixed into ``trainnet.caffe.Net`` (``self._net`` the runtime Net, ``self.cfg`` its
    config)."""

    def copy_from(self, path) -> WeightsReport:
        """The blobs of a .caffemodel, .caffemodel.h5 or .safetensors file, by layer name
        (Caffe's CopyTrainedLayersFrom): the file is checked whole first (shapes, finite
        values); layers of the file the net lacks are skipped, and the net's blobs the file
        lacks keep their values, with a warning naming them."""
        reports = [load_weights(Path(path), store, FINETUNE)
                   for store in (self._net.params, self._net.own_params) if store is not None]
        missing = [key for report in reports for key in report.missing]
        if missing:
            warnings.warn(f"{path}: {len(missing)} parameter blobs of the net are not in the "
                          f"file and keep their values: {', '.join(missing[:12])}"
                          + (" ..." if len(missing) > 12 else ""), stacklevel=2)
        return reports[0]

    def load_hdf5(self, path) -> WeightsReport:
        """Weights from a Caffe HDF5 model (Caffe's CopyTrainedLayersFromHDF5)."""
        return self.copy_from(path)

    def _named(self) -> dict:
        named = self._net.params.named_host()
        if self._net.own_params is not None:
            named.update(self._net.own_params.named_host())
        used = {s.name for s in self._net.plan.steps for _ in s.params} | \
            {a.name for s in self._net.plan.steps for a in s.absorbed}
        return {k: v for k, v in named.items() if k.rsplit(".", 1)[0] in used}

    def _cfg_layers(self) -> list:
        names = {s.name for s in self._net.plan.steps} | \
            {n for s in self._net.plan.steps for n in s.fused}
        return [layer for layer in self.cfg.layer if layer.name in names]

    def save(self, path) -> None:
        """The weights as a binary caffemodel Caffe reads (a ``.safetensors`` path: trainnet's
        format instead), written atomically."""
        named = self._named()
        if str(path).lower().endswith(".safetensors"):
            save_tensors(Path(path), named, {"format": "trainnet-weights",
                                             "net": self._net.plan.net_name})
            return
        net = self.cfg.model_copy(update={"layer": self._cfg_layers()})
        write_caffemodel(Path(path), self._net.plan.net_name, trainnet_to_caffe(named, net))

    def save_hdf5(self, path) -> None:
        """The weights in Caffe's HDF5 model layout (``data/<layer>/<index>``)."""
        write_caffemodel_h5(Path(path), [layer.name for layer in self._cfg_layers()], self._named())
