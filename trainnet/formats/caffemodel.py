"""Caffe's binary files: trained weights (.caffemodel) and single blobs (.binaryproto means).

A .caffemodel is a serialized NetParameter whose layers carry their parameter blobs; Caffe
loads it by layer name and checks every blob's shape.  Three forms exist: the current one
(``layer {}`` with string types), V1 (``layers {}`` with enum types) and V0 (a V1 entry
wrapping a ``layer {}`` with lowercase string types); old files store blobs in the deprecated
4-D num/channels/height/width fields, so an InnerProduct weight reads as (1, 1, N, K).
``read_caffemodel`` keeps the file's shapes; ``caffe_to_trainnet`` maps them onto trainnet's
``layer.index`` weight keys (with the net's shapes when it has them), ``trainnet_to_caffe``
and ``write_caffemodel`` go the other way in the current form.  The net (its shapes, its
layers, the layer types trainnet implements) comes from the caller: this module is a file
format and knows nothing of trainnet's packages above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, NamedTuple, Optional, Sequence

import numpy as np
from trainnet.errors import TrainnetError
from trainnet.formats import caffe_pb
from trainnet.formats.atomic import atomic_write
from trainnet.formats.blobproto import (MAX_BYTES, blob_array, blob_proto, parse, read_bytes, text,
                                        unknown_fields)
from trainnet.formats.caffe_types import V0_TYPE_NAMES, V1_TYPES
from trainnet.formats.weightkey import split_key, weight_key


# V1LayerParameter.LayerType -> the current type string (Caffe's UpgradeV1LayerType); NONE is
# no type at all.
V1_TYPE_NAMES = {"NONE": "", **V1_TYPES}

V1_NAMES_BY_NUMBER = {number: name for name, number in caffe_pb.V1_LAYER_TYPES.items()}

# Without the net's shapes: which blobs are 1-D (biases, BatchNorm statistics), by type.
ONE_D_BLOBS = {"Convolution": {1}, "Deconvolution": {1}, "InnerProduct": {1}, "Embed": {1},
               "BatchNorm": {0, 1, 2}}
SQUEEZE_LEGACY = {"Scale", "Bias", "PReLU"}  # 1-D when stored as legacy 4-D, else as stored


class CaffeLayer(NamedTuple):
    """One layer of a Caffe model: its name, Caffe type string and parameter blobs (float32)."""

    name: str
    type: str
    blobs: list[np.ndarray]
    bottom: tuple[str, ...] = ()
    top: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaffeModel:
    """What a .caffemodel holds: the net's name and its layers in file order."""

    name: str
    layers: list[CaffeLayer]
    file: str = "<memory>"   # where it was read from, for messages
    form: str = "layer"      # "layer" (current), "V1" or "V0"


# --- reading -----------------------------------------------------------------------------------

def _layer_type(layer, form: str, where: str) -> str:
    if form == "V0":
        raw = text(layer.layer.type, f"{where}: its type")
        v1 = V0_TYPE_NAMES.get(raw)
        return V1_TYPE_NAMES[v1] if v1 else raw
    if form == "V1":
        if not layer.HasField("type"):
            return ""
        return V1_TYPE_NAMES[V1_NAMES_BY_NUMBER[layer.type]]
    return text(layer.type, f"{where}: its type")


def read_caffemodel(path: str | Path) -> CaffeModel:
    """Read a .caffemodel (any of Caffe's three forms); blobs keep the file's shapes."""
    path = Path(path)
    data = read_bytes(path, "Caffe model (.caffemodel)", hdf5_hint=(
        " (an HDF5 model, .caffemodel.h5, as snapshot_format: HDF5 writes: --weights of train "
        "and test reads it, and it resumes through its .solverstate.h5)"))
    net = parse(caffe_pb.NetParameter(), data, path, "Caffe model (.caffemodel)")
    _refuse_foreign_fields(path, net)
    if not net.layer and not net.layers:
        raise TrainnetError(f"{path}: holds no layers: not a Caffe model (.caffemodel), or a "
                            "corrupt one")
    if net.layer and net.layers:
        raise TrainnetError(f"{path}: mixes the current 'layer' form with the deprecated 'layers' "
                            "(V1) form; Caffe would ignore the 'layer' entries. Upgrade the file "
                            "with Caffe's upgrade_net_proto_binary")
    if net.layer:
        form, entries = "layer", net.layer
    else:
        form = "V0" if any(l.HasField("layer") for l in net.layers) else "V1"
        entries = net.layers
    layers = []
    for i, entry in enumerate(entries):
        source = entry.layer if form == "V0" and entry.HasField("layer") else entry
        name = text(source.name, f"{path}: the name of layer #{i}") or f"#{i}"
        where = f"{path}: layer '{name}'"
        blobs = [blob_array(b, f"{where} blob {j}") for j, b in enumerate(source.blobs)]
        bottom = tuple(text(b, f"{where}: a bottom") for b in entry.bottom)
        top = tuple(text(t, f"{where}: a top") for t in entry.top)
        layers.append(CaffeLayer(name, _layer_type(entry, form, where), blobs, bottom, top))
    return CaffeModel(text(net.name, f"{path}: the net's name"), layers, str(path), form)


# Caffe's NetParameter fields: name, layers (V1), input, input_dim, force_backward, state,
# debug_info, input_shape, layer.
NET_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 100}
LENGTH_DELIMITED = 2


def _refuse_foreign_fields(path: Path, net) -> None:
    """A message field a NetParameter has not: a layer whose tag a corrupt byte changed (it
    would be dropped without a word), or a fork's extension; scalar settings of forks pass."""
    for number, wire in unknown_fields(net):
        if number not in NET_FIELDS and wire == LENGTH_DELIMITED:
            raise TrainnetError(f"{path}: holds a field (number {number}) that Caffe's "
                                "NetParameter has not: a corrupt Caffe model, or one of a Caffe "
                                "fork trainnet does not read")


# --- writing -----------------------------------------------------------------------------------

def write_caffemodel(path: str | Path, net_name: str, layers: Iterable[CaffeLayer | tuple]) -> None:
    """Write a .caffemodel in the current form (``layer {}`` with name, type, bottom, top and
    shaped blobs), atomically; Caffe matches its layers by name and checks blob shapes.
    ``layers`` are CaffeLayer or (name, type, blobs[, bottom, top]) tuples."""
    net = caffe_pb.NetParameter(name=net_name)
    for item in layers:
        layer = CaffeLayer(*item)
        entry = net.layer.add(name=layer.name, type=layer.type)
        entry.bottom.extend(layer.bottom)
        entry.top.extend(layer.top)
        for blob in layer.blobs:
            entry.blobs.append(blob_proto(blob))
    payload = net.SerializeToString()
    if len(payload) > MAX_BYTES:
        raise TrainnetError(f"{path}: the model needs {len(payload) / 2**30:.1f} GiB, more than a "
                            "Caffe model file may hold (2 GiB)")
    atomic_write(Path(path), payload)


# --- trainnet weights <-> Caffe layers -----------------------------------------------------------

def _strip_ones(shape: Sequence[int]) -> tuple[int, ...]:
    s = list(shape)
    while s and s[0] == 1:
        s.pop(0)
    while s and s[-1] == 1:
        s.pop()
    return tuple(s)


def fit_shape(array: np.ndarray, target: tuple[int, ...], where: str) -> np.ndarray:
    """``array`` in the net's ``target`` shape when only leading/trailing 1s differ."""
    target = tuple(target)
    if array.shape == target:
        return array
    if array.size == math.prod(target) and _strip_ones(array.shape) == _strip_ones(target):
        return array.reshape(target)
    raise TrainnetError(f"{where}: shape {array.shape} in the file but {target} in the net")


def _by_type(layer: CaffeLayer, j: int, array: np.ndarray, where: str) -> np.ndarray:
    """The trainnet shape of blob ``j`` without the net's shapes: biases and BatchNorm's
    statistics 1-D, InnerProduct's weight 2-D, Scale/Bias/PReLU 1-D when stored as legacy
    4-D, anything else as stored."""
    squeezable = len(_strip_ones(array.shape)) <= 1
    if j in ONE_D_BLOBS.get(layer.type, ()) or (layer.type in SQUEEZE_LEGACY and array.ndim == 4
                                                 and squeezable):
        if not squeezable:
            raise TrainnetError(f"{where}: shape {array.shape}, but a {layer.type} layer's blob {j} "
                                "has one axis")
        return array.reshape(-1)
    if layer.type == "InnerProduct" and j == 0 and array.ndim != 2:
        if array.ndim < 2 or any(d != 1 for d in array.shape[:-2]):
            raise TrainnetError(f"{where}: shape {array.shape}, but an InnerProduct weight is 2-D "
                                "(legacy files: (1, 1, N, K))")
        return array.reshape(array.shape[-2:])
    return array


def _refuse_unknown(model: CaffeModel, layer: CaffeLayer, known_types: Collection[str]) -> None:
    if layer.type not in known_types:
        what = f"type '{layer.type}'" if layer.type else "no type (or a V1 type this reader lacks)"
        raise TrainnetError(f"{model.file}: layer '{layer.name}' has {what}, which trainnet does "
                            "not implement; its weights cannot be converted")


def caffe_to_trainnet(model: CaffeModel, targets: Optional[dict[str, tuple[int, ...]]] = None,
                      known_types: Optional[Collection[str]] = None) -> dict[str, np.ndarray]:
    """Weights by trainnet key ``layer.index`` from a read Caffe model.

    With ``targets`` (the net's blob shapes by key) every layer of the file that the net has
    must hold the net's number of blobs and shapes that agree up to leading/trailing 1s; the
    file's other layers come back as stored (the caller reports them as skipped).  Without
    targets, per-type rules fix legacy shapes and, given ``known_types`` (the layer types
    trainnet implements), a layer with blobs of another type is refused by name.  Layers
    without blobs are left out.
    """
    net_blobs: dict[str, int] = {}
    for key in targets or {}:
        layer, index = split_key(key)
        net_blobs[layer] = max(net_blobs.get(layer, 0), index + 1)
    out: dict[str, np.ndarray] = {}
    for layer in model.layers:
        if not layer.blobs:
            continue
        where = f"{model.file}: layer '{layer.name}'"
        in_net = layer.name in net_blobs
        if targets is None and known_types is not None:
            _refuse_unknown(model, layer, known_types)
        elif in_net and net_blobs[layer.name] != len(layer.blobs):
            raise TrainnetError(f"{where} ({layer.type}): {len(layer.blobs)} blobs in the file but "
                                f"{net_blobs[layer.name]} in the net (as Caffe, they must agree: "
                                "is bias_term the same?)")
        for j, array in enumerate(layer.blobs):
            key = weight_key(layer.name, j)
            if key in out:
                raise TrainnetError(f"{where}: the file holds two layers of this name")
            blob_where = f"{where} blob {j}"
            if targets is None:
                out[key] = _by_type(layer, j, array, blob_where)
            elif key in targets:
                out[key] = fit_shape(array, targets[key], blob_where)
            else:
                out[key] = array
    return out


def trainnet_to_caffe(weights: dict[str, np.ndarray], net) -> list[CaffeLayer]:
    """The layers of ``net`` (a NetConfig, or anything with its ``layer`` list) in its order, each once by name, with their blobs
    from trainnet ``weights`` for ``write_caffemodel``.  A layer that shares a blob by ParamSpec
    name gets the owner's values, as Caffe writes shared blobs under every layer using them.
    Shapes are kept: trainnet stores blobs as current Caffe does (InnerProduct weight 2-D)."""
    owners: dict[str, str] = {}
    used: set[str] = set()
    layers, seen = [], set()
    for cfg in net.layer:
        if cfg.name in seen:
            continue
        seen.add(cfg.name)
        blobs, j = [], 0
        while True:
            key = weight_key(cfg.name, j)
            spec = cfg.param[j] if j < len(cfg.param) else None
            if key in weights:
                if spec is not None and spec.name:
                    owners.setdefault(spec.name, key)
            elif spec is not None and spec.name in owners:
                key = owners[spec.name]
            else:
                break
            blobs.append(np.asarray(weights[key], np.float32))
            used.add(key)
            j += 1
        layers.append(CaffeLayer(cfg.name, cfg.type, blobs, tuple(cfg.bottom), tuple(cfg.top)))
    extra = sorted(set(weights) - used)
    if extra:
        raise TrainnetError(f"the weights hold blobs the net's layers do not have: {', '.join(extra)}")
    return layers
