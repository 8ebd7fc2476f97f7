"""Caffe's HDF5 weights (``.caffemodel.h5``, snapshot_format HDF5), as Net::ToHDF5 writes them.

The file holds a group ``data`` with one group per layer of the net, and in it one float32
dataset per parameter blob the layer owns, named by the blob's index (``"0"``, ``"1"`` ...) and
in the blob's shape.  A blob a layer shares from another (ParamSpec ``name``) is stored only
under its owner.  A layer name with ``/`` (GoogLeNet's ``conv1/7x7_s2``) becomes nested groups,
as HDF5 reads such a name; reading walks them back to the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import h5py
import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats import hdf5
from trainnet.formats.caffemodel import fit_shape
from trainnet.formats.weightkey import key_layer, key_parts, split_key, weight_key

WHAT = "Caffe model (.caffemodel.h5)"


def write_caffemodel_h5(path: str | Path, layer_names: Iterable[str],
                        weights: dict[str, np.ndarray]) -> None:
    """Write ``weights`` (trainnet keys ``layer.index``, each blob once, under its owner) with a
    group for every one of ``layer_names``, atomically."""
    names = list(layer_names)
    unknown = sorted({key_layer(key) for key in weights} - set(names))
    if unknown:
        raise TrainnetError(f"{path}: the weights hold blobs of layers the net lacks: "
                            f"{', '.join(unknown)}")

    def fill(f: h5py.File) -> None:
        data = f.create_group("data")
        for name in names:
            data.require_group(name)
        for key, array in weights.items():
            layer, index = split_key(key)
            hdf5.save_blob(data[layer], str(index), array)

    hdf5.write_hdf5(Path(path), fill)


def read_caffemodel_h5(path: str | Path,
                       targets: Optional[dict[str, tuple[int, ...]]] = None) -> dict[str, np.ndarray]:
    """The blobs of an HDF5 Caffe model by trainnet key.  With ``targets`` (the net's blob shapes
    by key) a blob of a layer the net has must be one the net's layer owns, in a shape that
    agrees up to leading/trailing 1s; the file's other layers come back as stored."""
    path = Path(path)
    where = str(path)
    blobs: dict[str, np.ndarray] = {}
    with hdf5.open_hdf5(path, WHAT) as f:
        data = hdf5.member(f, "data", where)
        if not isinstance(data, h5py.Group):
            state = all(hdf5.member(f, n, where) is not None for n in ("iter", "history"))
            hint = (" (a Caffe solver state: its weights are in the file named by learned_net)"
                    if state else "")
            raise TrainnetError(f"{path}: an HDF5 file without the group 'data': not a {WHAT}{hint}")
        hdf5.check_links(data, where)
        items: list[tuple[str, object]] = []
        data.visititems(lambda name, item: items.append((name, type(item))))
        for name, kind in items:
            if kind not in (h5py.Group, h5py.Dataset):
                raise TrainnetError(f"{path}: 'data/{name}' is a {kind.__name__}, neither a "
                                    "layer's group nor a blob: a corrupt file")
        names = [name for name, kind in items if kind is h5py.Dataset]
        for name in names:
            layer, _, index = name.rpartition("/")
            if not layer or not index.isdigit():
                raise TrainnetError(f"{path}: dataset 'data/{name}' is not a layer's blob "
                                    "(data/<layer>/<index>)")
            blobs[weight_key(layer, index)] = hdf5.load_blob(data, name, where)
    if targets is None:
        return blobs
    net_layers = {key_layer(key) for key in targets}
    out = {}
    for key, array in blobs.items():
        layer, index = key_parts(key)
        blob_where = f"{path}: layer '{layer}' blob {index}"
        if key in targets:
            out[key] = fit_shape(array, targets[key], blob_where)
        elif layer in net_layers:
            raise TrainnetError(f"{blob_where}: the file holds it, but the net's layer has no such "
                                "blob of its own (is bias_term the same?)")
        else:
            out[key] = array
    return out
