"""Weights and solver state on disk, as safetensors, written atomically.

Weights: ``{prefix}_iter_{N}.safetensors`` holding each parameter blob as ``layer.index``.
State: ``{prefix}_iter_{N}.solverstate`` (safetensors too) holding the update history, the
data readers' cursors and permutations, and JSON metadata (iteration, RNG state, weights file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, load_file, save

from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.formats.hdf5 import is_hdf5
from trainnet.runtime.params import ParamStore
from trainnet.zoo.caffemodel import caffe_to_trainnet, read_caffemodel
from trainnet.zoo.caffemodel_h5 import read_caffemodel_h5


def save_tensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata))


def read_tensors(path: Path, what: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise TrainnetError(f"{path}: no such {what} file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TrainnetError(f"{path}: not a readable {what} file (safetensors): {exc}") from None


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise TrainnetError(f"{path}: not a readable solver state file: {exc}") from None


def save_weights(path: Path, store: ParamStore, net_name: str, iteration: int) -> None:
    save_tensors(path, store.named_host(), {"format": "trainnet-weights", "net": net_name,
                                       "iter": str(iteration)})


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header's 8-byte length, then the JSON header."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def load_weights(path: Path, store: ParamStore) -> tuple[list[str], list[str]]:
    """Copy blobs by layer name into ``store`` from trainnet weights (safetensors), a Caffe
    .caffemodel (by suffix, else by content) or an HDF5 .caffemodel.h5 (by content), whose
    legacy shapes are fitted to the net's.
    Returns (loaded layers, skipped layers of the file with no match here); a shape mismatch
    is an error naming the layer and both shapes."""
    path = Path(path)
    targets = store.named()
    shapes = {k: v.shape for k, v in targets.items()}
    if is_hdf5(path):
        tensors = read_caffemodel_h5(path, shapes)
    elif path.is_file() and (path.suffix.lower() == ".caffemodel" or
                             (path.suffix.lower() != ".safetensors" and not is_safetensors(path))):
        tensors = caffe_to_trainnet(read_caffemodel(path), shapes)
    else:
        tensors = read_tensors(path, "weights")
    loaded, skipped = [], []
    for key, value in tensors.items():
        layer = key.rsplit(".", 1)[0]
        if key not in targets:
            if layer not in skipped:
                skipped.append(layer)
            continue
        if value.shape != targets[key].shape:
            raise TrainnetError(f"{path}: layer '{layer}' blob {key.rsplit('.', 1)[-1]}: shape "
                                f"{tuple(value.shape)} in the file but {targets[key].shape} in the net")
        store.assign(key, value)
        if layer not in loaded:
            loaded.append(layer)
    return loaded, [s for s in skipped if s not in loaded]


def rng_to_json(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def rng_from_json(rng: np.random.Generator, text: str) -> None:
    rng.bit_generator.state = json.loads(text)


def save_state(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    save_tensors(path, tensors, {"format": "trainnet-solverstate", "meta": json.dumps(meta)})


def load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    tensors = read_tensors(path, "solver state")
    meta = read_metadata(path)
    if meta.get("format") != "trainnet-solverstate":
        raise TrainnetError(f"{path}: not a trainnet solver state (a weights file? resume with the "
                            ".solverstate file written beside it)")
    return tensors, _meta(meta, path, {"iter", "weights"})


RECORD_KEYS = {"type", "rng", "test_rng", "losses", "layout"}


def _meta(metadata: dict[str, str], path: Path, keys: set[str] = frozenset()) -> dict[str, Any]:
    """The JSON ``meta`` of a state's metadata, with RECORD_KEYS and ``keys`` present."""
    try:
        info = json.loads(metadata["meta"])
        missing = (RECORD_KEYS | keys) - set(info)
    except (KeyError, ValueError, TypeError):
        missing = {"meta"}
    if missing:
        raise TrainnetError(f"{path}: damaged solver state (lacks {', '.join(sorted(missing))})")
    return info


def record_bytes(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """A resume record (Solver.resume_record) as safetensors bytes, for a Caffe-format state."""
    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                {"format": "trainnet-resume", "meta": json.dumps(meta)})


def record_from_bytes(data: bytes, path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        tensors = load(data)
        size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + size])["__metadata__"]
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:
        raise TrainnetError(f"{path}: damaged solver state (trainnet's resume record: {exc})") from None
    return tensors, _meta(metadata, path)
