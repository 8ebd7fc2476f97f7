"""CIFAR's binary batches (``data_batch_1.bin`` ... ``test_batch.bin``) read directly.

A CIFAR-10 record is one label byte and 3072 pixel bytes: the 32x32 red plane, then green,
then blue.  CIFAR-100's records have two label bytes (coarse, then fine; the fine label is
used).  Caffe's ``convert_cifar_data`` copies the pixel bytes into its Datum unchanged, so the
images here are exactly those of Caffe's CIFAR LMDBs: RGB planes, not BGR, and Caffe's CIFAR
mean (``mean.binaryproto``) is in that order too.  Files are decoded once per process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.formats.limits import regular_file

SIDE, CHANNELS = 32, 3
PIXELS = CHANNELS * SIDE * SIDE
LABEL_BYTES = {PIXELS + 1: 1, PIXELS + 2: 2}  # record size -> label bytes (CIFAR-10, CIFAR-100)


def record_size(path: Path) -> int:
    """The record size of a CIFAR binary file, by its length (refusing anything else)."""
    size = regular_file(Path(path), "CIFAR batch file")
    for record in LABEL_BYTES:
        if size and size % record == 0:
            return record
    raise TrainnetError(f"{path}: {size} bytes is not a whole number of CIFAR-10 (3073-byte) or "
                        "CIFAR-100 (3074-byte) records: not a CIFAR binary batch, or a truncated one")


def count_records(paths: list[Path]) -> int:
    """How many images the files hold (from their sizes alone); all must be of one kind."""
    sizes = {p: record_size(p) for p in paths}
    if len(set(sizes.values())) > 1:
        raise TrainnetError("the CIFAR files mix CIFAR-10 and CIFAR-100 records: "
                            + ", ".join(str(p) for p in paths))
    return sum(Path(p).stat().st_size // r for p, r in sizes.items())


# The classes a label byte may name: CIFAR-10's 10; CIFAR-100's 20 coarse and 100 fine.
LABEL_LIMITS = {1: (10,), 2: (20, 100)}


def _records(path: Path) -> np.ndarray:
    """The records of one file (N, record size), their labels checked: a label out of range
    is a file that is not CIFAR's, or one whose records are misaligned (bytes lost or added)."""
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    size = record_size(path)
    if raw.size % size:
        raise TrainnetError(f"{path}: changed while it was read")
    raw = raw.reshape(-1, size)
    label_bytes = LABEL_BYTES[size]
    for j, limit in enumerate(LABEL_LIMITS[label_bytes]):
        bad = np.flatnonzero(raw[:, j] >= limit)
        if bad.size:
            kind = "CIFAR-10" if label_bytes == 1 else "CIFAR-100"
            raise TrainnetError(f"{path}: record {bad[0]} has label {raw[bad[0], j]}, but {kind} "
                                f"labels are below {limit}: not a {kind} batch, or a corrupt one")
    return raw


_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_LOCK = threading.Lock()


def read_cifar(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of the files, in file order;
    read-only arrays, shared by every reader of the same files in this process."""
    paths = [Path(p) for p in paths]
    count_records(paths)
    key = tuple((os.path.realpath(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    with _LOCK:
        if key not in _CACHE:
            records = [_records(p) for p in paths]
            raw = np.concatenate(records) if len(records) > 1 else records[0]
            label_bytes = LABEL_BYTES[raw.shape[1]]
            images = np.ascontiguousarray(raw[:, label_bytes:]).reshape(-1, CHANNELS, SIDE, SIDE)
            labels = raw[:, label_bytes - 1].astype(np.int64)
            images.flags.writeable = labels.flags.writeable = False
            while len(_CACHE) >= 2:  # a training and a test set: CIFAR-10's is 150 MB
                del _CACHE[next(iter(_CACHE))]
            _CACHE[key] = images, labels
        return _CACHE[key]
