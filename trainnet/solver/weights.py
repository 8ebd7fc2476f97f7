"""Weights into a net's parameters, every blob accounted for.

``read_weights`` reads trainnet weights (safetensors), a Caffe .caffemodel or an HDF5
.caffemodel.h5 against a parameter store and checks them whole before anything is assigned:
every key names a blob (``layer.index``), every blob is floating point, finite and of the net's
shape, a layer of the net has no blob the net lacks, and (EXACT) every blob of the net is in
the file.  Its report says what was loaded, what the file lacks (FINETUNE: those keep their
fillers' values) and which layers of the file have no place here.  ``load_weights`` also
assigns.  A solver state given as weights is refused, with the way to resume from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats import solverstate, tensorfile
from trainnet.formats.hdf5 import is_hdf5, open_hdf5
from trainnet.formats.limits import regular_file
from trainnet.formats.weightkey import key_layer, parse_key, weight_key
from trainnet.runtime.params import ParamStore
from trainnet.formats.caffemodel import caffe_to_trainnet, read_caffemodel
from trainnet.formats.caffemodel_h5 import read_caffemodel_h5

FINETUNE = "finetune"   # train --weights: blobs the file lacks keep their fillers' values
EXACT = "exact"         # test, classify, resume: every blob of the net from the file
def _listed(keys, most: int = 12) -> str:
    keys = list(keys)
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


@dataclass
class WeightsReport:
    """What loading a weights file did to a net, blob by blob (keys ``layer.index``)."""
    path: Path
    net_blobs: list[str]                 # every blob of the net, in the store's order
    loaded: list[str]                    # blobs set from the file
    missing: list[str]                   # blobs of the net the file lacks
    skipped: list[str]                   # layers of the file with no place in the net
    metadata: dict[str, str] = field(default_factory=dict)   # the file's (safetensors)
    digests: dict[str, str] = field(default_factory=dict)    # of the loaded blobs

    def _by_layer(self, keys) -> dict[str, list[str]]:
        layers: dict[str, list[str]] = {}
        for key in keys:
            layers.setdefault(key_layer(key), []).append(key)
        return layers

    @property
    def loaded_layers(self) -> list[str]:
        return list(self._by_layer(self.loaded))

    def lines(self) -> list[str]:
        """The report as lines for a person: counts of blobs, each missing blob by name."""
        net, lines = self._by_layer(self.net_blobs), []
        loaded, missing = self._by_layer(self.loaded), self._by_layer(self.missing)
        partial = [layer for layer in loaded if len(loaded[layer]) < len(net[layer])]
        counts = f"{len(self.loaded)} of {len(self.net_blobs)} parameter blobs"
        if not partial:
            lines.append(f"Loaded weights for {len(loaded)} layers from {self.path}: "
                         f"{', '.join(loaded) or 'none'} ({counts})")
        else:
            parts = [layer if layer not in partial else
                     f"{layer} in part ({', '.join(loaded[layer])})" for layer in loaded]
            lines.append(f"Loaded {counts} from {self.path}: {', '.join(parts)}")
        whole = [layer for layer in missing if len(missing[layer]) == len(net[layer])]
        if whole:
            lines.append("Layers not in the weights file (initialised by their fillers): "
                         + ", ".join(f"{layer} ({', '.join(missing[layer])})" for layer in whole))
        some = [key for layer in missing if layer not in whole for key in missing[layer]]
        if some:
            lines.append(f"Blobs not in the weights file (initialised by their fillers): "
                         f"{', '.join(some)}")
        if self.skipped:
            lines.append(f"Skipped layers not in this net: {', '.join(self.skipped)}")
        return lines


def is_solver_state(path: Path, metadata: dict[str, str] | None = None) -> bool:
    """Whether ``path`` is a solver state (trainnet's, or Caffe's binaryproto or HDF5)."""
    if metadata is not None:
        return metadata.get("format") == "trainnet-solverstate"
    if not Path(path).is_file():  # a pipe would block the read below
        return False
    if is_hdf5(path):
        with open_hdf5(path, "weights") as f:
            return "iter" in f and "history" in f and "data" not in f
    try:
        with open(path, "rb") as f:
            if f.read(1) != b"\x08":   # Caffe writes SolverState.iter (field 1, a varint) first;
                return False           # a NetParameter never starts so
        solverstate.read_state(path)
        return True
    except (OSError, TrainnetError):
        return False


def _refuse_state(path: Path) -> TrainnetError:
    return TrainnetError(f"{path} is a solver state, not weights; resume with --snapshot {path}")


def _read_file(path: Path, shapes: dict[str, tuple]) -> tuple[dict[str, np.ndarray], dict, dict]:
    """(blobs by key as float32, the file's metadata, the digests of its blobs as stored)."""
    regular_file(path, "weights file")  # a pipe or a device would block or never end
    if is_hdf5(path):
        if is_solver_state(path):
            raise _refuse_state(path)
        return read_caffemodel_h5(path, shapes), {}, {}
    if path.is_file() and (path.suffix.lower() == ".caffemodel" or
                           (path.suffix.lower() != ".safetensors" and not tensorfile.is_safetensors(path))):
        if is_solver_state(path):
            raise _refuse_state(path)
        return caffe_to_trainnet(read_caffemodel(path), shapes), {}, {}
    if is_solver_state(path, tensorfile.peek_metadata(path)):
        raise _refuse_state(path)
    read = tensorfile.read(path, "weights", floats=lambda name: True)
    return read.tensors, read.metadata, read.digests


def _nonfinite(path: Path, key: str, value: np.ndarray) -> TrainnetError:
    what = "NaN" if np.isnan(value).any() else "infinite values"
    return TrainnetError(f"{path}: blob {key} holds {what}; weights must be finite")


def read_weights(path: Path, store: ParamStore, mode: str = FINETUNE,
                 digests: bool = False) -> tuple[WeightsReport, dict[str, np.ndarray]]:
    """The blobs of ``path`` for ``store`` (keys ``layer.index``, float32, the net's shapes),
    checked whole, and the report; nothing is assigned.  ``digests``: the report carries the
    digests of the loaded blobs (as trainnet computes them for a float32 blob)."""
    path = Path(path)
    shapes = {weight_key(*s.key): tuple(s.shape) for s in store.slots}
    tensors, metadata, stored = _read_file(path, shapes)
    loaded, missing, skipped = account(path, tensors, shapes, mode)
    report = WeightsReport(path, list(shapes), loaded, missing, skipped, metadata)
    if digests:
        report.digests = {key: stored.get(key) or tensorfile.array_digest(tensors[key])
                          for key in loaded}
    return report, {key: tensors[key] for key in loaded}


def account(path: Path, tensors: dict[str, np.ndarray], shapes: dict[str, tuple],
            mode: str) -> tuple[list[str], list[str], list[str]]:
    """Every blob of a net (``shapes`` by key) against the blobs of a file: (loaded, missing,
    layers of the file with no place in the net).  Keys that are not ``layer.index``, shapes
    that differ, blobs a layer of the net has not, non-finite values and (EXACT) missing blobs
    are errors naming them."""
    counts: dict[str, int] = {}   # parameter blobs per layer of the net
    for layer, index in (parse_key(key, path) for key in shapes):
        counts[layer] = max(counts.get(layer, 0), index + 1)
    skipped: list[str] = []
    for key, value in tensors.items():
        layer, index = parse_key(key, path)
        if key in shapes:
            if tuple(value.shape) != shapes[key]:
                raise TrainnetError(f"{path}: layer '{layer}' blob {index}: shape "
                                    f"{tuple(value.shape)} in the file but {shapes[key]} in the net")
        elif layer in counts:
            raise TrainnetError(f"{path}: blob {key}: layer '{layer}' has {counts[layer]} "
                                "parameter blobs in the net (is bias_term the same?)")
        elif layer not in skipped:
            skipped.append(layer)
    loaded = [key for key in shapes if key in tensors]
    missing = [key for key in shapes if key not in tensors]
    if mode == EXACT and missing:
        raise TrainnetError(f"{path}: lacks {len(missing)} of the net's {len(shapes)} parameter "
                            f"blobs: {_listed(missing)}")
    for key in loaded:
        if not np.isfinite(tensors[key]).all():
            raise _nonfinite(path, key, tensors[key])
    return loaded, missing, skipped


def assign(store: ParamStore, blobs: dict[str, np.ndarray]) -> None:
    for key, value in blobs.items():
        store.assign(key, value)


def load_weights(path: Path, store: ParamStore, mode: str = FINETUNE,
                 digests: bool = False) -> WeightsReport:
    """``read_weights``, then every checked blob into ``store``."""
    report, blobs = read_weights(path, store, mode, digests)
    assign(store, blobs)
    return report
