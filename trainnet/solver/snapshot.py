"""Weights and solver state on disk, as safetensors, written atomically.

Weights: ``{prefix}_iter_{N}.safetensors`` holding each parameter blob as ``layer.index``.
State: ``{prefix}_iter_{N}.solverstate`` (safetensors too) holding the update history, the
data readers' cursors and permutations, and JSON metadata (iteration, RNG state, weights file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats import tensorfile
from trainnet.formats.rngstate import is_rng_json
from trainnet.runtime.params import ParamStore


def save_tensors(path: Path, tensors: dict[str, np.ndarray],
                 metadata: dict[str, str]) -> dict[str, str]:
    """Write a safetensors file with each tensor's digest; returns the digests."""
    return tensorfile.write(path, tensors, metadata)


def read_tensors(path: Path, what: str) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, checked against their recorded digests; weights
    (``what`` "weights") must be floating point and come back as float32."""
    return tensorfile.read(path, what, floats=lambda name: what == "weights").tensors


def save_weights(path: Path, store: ParamStore, net_name: str, iteration: int) -> dict[str, str]:
    """Write the store's blobs; returns their digests."""
    return save_tensors(path, store.named_host(), {"format": "trainnet-weights", "net": net_name,
                                                   "iter": str(iteration)})


def save_state(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    save_tensors(path, tensors, {"format": "trainnet-solverstate", "meta": json.dumps(meta)})


def _history(name: str) -> bool:
    return name.startswith("history/")


def load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A trainnet solver state: its tensors (checked against their digests; the history
    floating point) and its metadata, every field checked."""
    path = Path(path)
    read = tensorfile.read(path, "solver state", floats=_history)
    if read.metadata.get("format") != "trainnet-solverstate":
        raise TrainnetError(f"{path}: not a trainnet solver state (a weights file? resume with the "
                            ".solverstate file written beside it)")
    return read.tensors, _meta(read.metadata, path, {"iter", "weights"})


RECORD_KEYS = {"type", "rng", "test_rng", "losses", "layout"}


def _number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _sha256(value) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def file_name(value) -> bool:
    """A plain file name: the state's weights lie in the state's own folder."""
    return (isinstance(value, str) and value not in ("", ".", "..")
            and not any(c in value for c in "/\\\0"))


# each field of a state's metadata: (its check, what it must be)
FIELDS = {
    "type": (lambda v: isinstance(v, str), "a solver type"),
    "rng": (is_rng_json, "a random generator's state"),
    "test_rng": (is_rng_json, "a random generator's state"),
    "losses": (lambda v: isinstance(v, list) and all(map(_number, v)), "a list of finite numbers"),
    "layout": (lambda v: isinstance(v, list) and all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], list)
        and all(map(_count, e[1])) for e in v), "a list of [blob, shape]"),
    "iter": (_count, "a non-negative integer"),
    "weights": (file_name, "a file name in the state's folder"),
    "weights_sha256": (_sha256, "a SHA-256 digest"),
    "history_sha256": (_sha256, "a SHA-256 digest"),
}


def _meta(metadata: dict[str, str], path: Path, keys: set[str] = frozenset()) -> dict[str, Any]:
    """The JSON ``meta`` of a state's metadata, with RECORD_KEYS and ``keys`` present and every
    field of FIELDS it holds well-formed."""
    try:
        info = json.loads(metadata["meta"])
        missing = (RECORD_KEYS | keys) - set(info)
    except (KeyError, ValueError, TypeError):
        missing = {"meta"}
    if missing:
        raise TrainnetError(f"{path}: damaged solver state (lacks {', '.join(sorted(missing))})")
    for key, (check, want) in FIELDS.items():
        if key in info and not check(info[key]):
            shown = json.dumps(info[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise TrainnetError(f"{path}: damaged solver state ({key}: {shown} is not {want})")
    return info


def record_bytes(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """A resume record (Solver.resume_record) as safetensors bytes, for a Caffe-format state."""
    return tensorfile.encode(tensors, {"format": "trainnet-resume", "meta": json.dumps(meta)})[0]


def record_from_bytes(data: bytes, path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        read = tensorfile.decode(bytearray(data), path, "trainnet resume record")
    except TrainnetError as exc:
        raise TrainnetError(f"{path}: damaged solver state (trainnet's resume record: "
                            f"{str(exc).partition(': ')[2]})") from None
    return read.tensors, _meta(read.metadata, path)
