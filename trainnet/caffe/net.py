"""pycaffe's Net over trainnet's compiled plan and runtime Net.

A Net made here keeps every blob in its own memory (the plan compiled without reuse, in-place
runs or folds beyond what the config says), so any blob may be read after a pass, or written
and the pass resumed from a layer (``forward(start=...)``).  ``keep=[...]`` instead compiles
the packed plan training uses and leaves only the named blobs (and the outputs) readable.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional, Sequence

import numpy as np

from trainnet.caffe import mode
from trainnet.caffe.blob import Blob
from trainnet.caffe.net_files import NetFiles
from trainnet.errors import TrainnetError
from trainnet.netcfg import NetConfig, load_net
from trainnet.netcfg.common import BlobShape
from trainnet.plan import compile_net
from trainnet.runtime.net import Net as RuntimeNet


class LayerView:
    """An entry of ``Net.layers``: the layer's ``type``, ``name`` and parameter ``blobs``."""

    def __init__(self, name: str, type_name: str, blobs: list[Blob]):
        self.name, self.type, self.blobs = name, type_name, blobs

    def __repr__(self) -> str:
        return f"<{self.type} layer {self.name!r}>"


class Net(NetFiles):
    """``Net(model, phase)``, ``Net(model, weights, phase)`` or keywords (``phase=``,
    ``weights=``, ``level=``, ``stages=``); ``model`` a prototxt or YAML file (or a NetConfig).
    ``keep``: compile for speed, keeping only these blobs (and the outputs) readable."""

    def __init__(self, model, *args, phase=None, weights: Optional[str] = None, level: int = 0,
                 stages: Optional[Sequence[str]] = None, keep: Optional[Sequence[str]] = None):
        if len(args) == 2:
            weights, phase = args
        elif len(args) == 1:
            phase = args[0]
        elif args:
            raise TypeError("Net(model, phase) or Net(model, weights, phase)")
        if phase is None:
            raise TypeError("Net needs a phase: caffe.TRAIN or caffe.TEST")
        self.cfg = model if isinstance(model, NetConfig) else load_net(str(model))
        self.phase = mode.phase_name(phase)
        self._level, self._stages, self._keep = level, list(stages or []), keep
        self._pending: dict[str, tuple[int, ...]] = {}
        self._blobs: OrderedDict[str, Blob] = OrderedDict()
        self._build(mode.device(), params=None, rng=mode.rng())
        if weights is not None:
            self.copy_from(weights)

    @classmethod
    def _over(cls, runtime: RuntimeNet, cfg: NetConfig) -> "Net":
        """A pycaffe view of a runtime Net made elsewhere (a Solver's nets)."""
        net = cls.__new__(cls)
        net.cfg, net.phase, net._keep = cfg, runtime.plan.phase, None
        net._level, net._stages, net._pending = 0, [], {}
        net._blobs = OrderedDict()
        net._attach(runtime)
        return net

    # --- planning ---------------------------------------------------------------------------
    def _build(self, device, params, rng) -> None:
        cfg = _with_input_shapes(self.cfg, self._pending)
        backward = self.phase == "TRAIN" or cfg.force_backward
        if self._keep is None:
            options = dict(reuse_memory=False, in_place=False, fuse=False)
        else:
            options = dict(keep=list(self._keep))
        plan = compile_net(cfg, self.phase, level=self._level, stages=self._stages,
                           backward=backward, gpu=device.is_gpu, **options)
        self._attach(RuntimeNet(plan, device, params=params, rng=rng))
        self.cfg, self._pending = cfg, {}

    def _attach(self, runtime: RuntimeNet) -> None:
        self._net = runtime
        plan = runtime.plan
        inputs = {t for s in plan.steps if s.layer.filled_by_user and s.type == "Input" for t in s.tops}
        for name in plan.blobs:
            blob = self._blobs.get(name)
            data, diff = runtime.data(name), runtime.diff(name)
            if blob is None:
                hook = self._reshape_input if name in inputs else None
                self._blobs[name] = Blob(name, data, diff, hook)
            else:
                blob._bind(data, diff)
        for gone in [n for n in self._blobs if n not in plan.blobs]:
            del self._blobs[gone]
        self._inputs = [t for s in plan.steps if s.type == "Input" for t in s.tops]
        self._views = [LayerView(s.name, s.type, self._param_blobs(s, io))
                       for s, io in zip(plan.steps, runtime.ios)]
        # a Python layer is shown as the user's own object, as pycaffe shows it
        self._layers = [getattr(s.layer, "user", None) if s.type == "Python" else view
                        for s, view in zip(plan.steps, self._views)]
        self._index = {}
        for s in plan.steps:
            for name in [s.name, *s.fused]:
                self._index[name] = s.index

    def _param_blobs(self, step, io) -> list[Blob]:
        out = []
        for j, (use, data) in enumerate(zip(step.params, io.params)):
            slot = self._net.plan.params[use.slot]
            store = self._net.params if slot.key in self._net.params.index else self._net.own_params
            diff = store.view(store.diff, store.lookup(slot)).reshape(data.shape)
            out.append(Blob(f"{step.name}[{j}]", data, diff))
        return out

    def _reshape_input(self, name: str, shape: tuple[int, ...]) -> None:
        self._pending[name] = shape

    def reshape(self) -> None:
        """Re-plan for the shapes given to input blobs' ``reshape``, keeping the parameters."""
        if self._pending:
            self._build(self._net.device, params=self._net.params, rng=self._net.rng)

    # --- what pycaffe shows -----------------------------------------------------------------
    @property
    def blobs(self) -> OrderedDict:
        return self._blobs

    @property
    def params(self) -> OrderedDict:
        return OrderedDict((l.name, l.blobs) for l in self._views if l.blobs)

    @property
    def layers(self) -> list[LayerView]:
        return self._layers

    @property
    def _layer_names(self) -> list[str]:
        return [l.name for l in self._views]

    @property
    def layer_dict(self) -> OrderedDict:
        return OrderedDict((v.name, l) for v, l in zip(self._views, self._layers))

    @property
    def inputs(self) -> list[str]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[str]:
        return list(self._net.plan.outputs)

    @property
    def top_names(self) -> OrderedDict:
        return OrderedDict((s.name, list(s.tops)) for s in self._net.plan.steps)

    @property
    def bottom_names(self) -> OrderedDict:
        return OrderedDict((s.name, list(s.bottoms)) for s in self._net.plan.steps)

    # --- passes -----------------------------------------------------------------------------
    def _span(self, start: Optional[str], end: Optional[str]) -> tuple[int, int]:
        last = len(self._net.plan.steps) - 1
        return (self._step(start) if start is not None else 0,
                self._step(end) if end is not None else last)

    def _step(self, layer: str) -> int:
        if layer not in self._index:
            raise KeyError(f"net '{self._net.plan.net_name}' has no layer '{layer}'")
        return self._index[layer]

    def forward(self, blobs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                end: Optional[str] = None, **kwargs) -> dict[str, Any]:
        """Run layers ``start`` to ``end`` (all by default) after setting the input blobs given
        as keywords; returns ``{blob: data}`` for the outputs and ``blobs``."""
        self.reshape()
        for name, array in kwargs.items():
            if name not in self._inputs:
                raise KeyError(f"'{name}' is not an input of the net (its inputs: "
                               f"{', '.join(self._inputs) or 'none'})")
            self._set(self._blobs[name].data, array, name)
        first, last = self._span(start, end)
        self._net.forward_span(first, last)
        wanted = list(dict.fromkeys(self.outputs + list(blobs or [])))
        return {name: self._blobs[name].data for name in wanted}

    def backward(self, diffs: Optional[Sequence[str]] = None, start: Optional[str] = None,
                 end: Optional[str] = None, **kwargs) -> dict[str, Any]:
        """Gradients from layer ``start`` down to ``end`` (all by default), the outputs' given
        as keywords; returns ``{blob: diff}`` for the inputs and ``diffs``.  Parameter
        gradients are written, not summed into (``clear_param_diffs`` is not needed)."""
        if not self._net.plan.backward:
            raise TrainnetError(f"net '{self._net.plan.net_name}' was made for {self.phase} "
                                "without a backward: set force_backward: true in the net")
        first, last = self._span(end, start)
        if start is None:
            self._net.seed_gradients()
        for name, array in kwargs.items():
            if name not in self.outputs:
                raise KeyError(f"'{name}' is not an output of the net (its outputs: "
                               f"{', '.join(self.outputs)})")
            self._set(self._blobs[name].diff, array, name)
        self._net.backward_span(first, last)
        wanted = list(dict.fromkeys(self._inputs + list(diffs or [])))
        return {name: self._blobs[name].diff for name in wanted}

    def _set(self, dst, array, name: str) -> None:
        if hasattr(array, "__cuda_array_interface__"):  # a CuPy array: copied on the device
            dst[...] = array
            return
        array = np.asarray(array, np.float32)
        if array.ndim and array.shape[0] != dst.shape[0]:
            raise ValueError(f"input '{name}': {array.shape[0]} items for a batch of "
                             f"{dst.shape[0]} (Input is not batch sized)")
        self._net.device.upload(dst, np.ascontiguousarray(np.broadcast_to(array, dst.shape)))

    def forward_all(self, blobs: Optional[Sequence[str]] = None, **kwargs) -> dict[str, np.ndarray]:
        """``forward`` over inputs of any length, a batch at a time (the last padded), the
        outputs and ``blobs`` concatenated on the host."""
        return self._all(blobs, None, kwargs)

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """``forward_all`` and ``backward`` per batch: (outputs, gradients) on the host."""
        return self._all(blobs, diffs or [], kwargs)

    def _all(self, blobs, diffs, kwargs):
        from trainnet.caffe.batches import run_batches
        return run_batches(self, blobs, diffs, kwargs)

    def clear_param_diffs(self) -> None:
        for store in filter(None, (self._net.params, self._net.own_params)):
            self._net.device.fill(store.diff, 0)

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray, layer: Optional[str] = None):
        self._net.set_input_arrays(data, labels, layer)

    def share_with(self, other: "Net") -> None:
        """Use ``other``'s parameters (by layer name) from now on, as Caffe's
        ShareTrainedLayersWith: a change to one is a change to both."""
        if other._net.device is not self._net.device:
            raise TrainnetError("share_with: the two nets are on different devices")
        self._build(self._net.device, params=other._net.params, rng=self._net.rng)


def _with_input_shapes(cfg: NetConfig, shapes: dict[str, tuple[int, ...]]) -> NetConfig:
    """``cfg`` with the Input layers' shapes of the blobs in ``shapes`` replaced."""
    if not shapes:
        return cfg
    layers = []
    for layer in cfg.layer:
        if layer.type == "Input" and any(t in shapes for t in layer.top):
            dims = list(layer.params.shape)  # one shape for every top, or one per top
            dims += [dims[-1]] * (len(layer.top) - len(dims)) if dims else []
            new = [BlobShape(dim=list(shapes[t])) if t in shapes else d
                   for t, d in zip(layer.top, dims)]
            layer = layer.model_copy(update={"params": layer.params.model_copy(update={"shape": new})})
        layers.append(layer)
    return cfg.model_copy(update={"layer": layers})
