"""Caffe's ``compute_image_mean``: the per-pixel mean image of a database of Datums.

As Caffe computes it: each record's values (uint8 pixels, float_data, or an encoded image
decoded with its own channels) are added one record at a time into a float32 sum, which is
divided by the record count in float32.  Written as ``save_blob(path, mean, legacy=True)`` the
file is byte for byte Caffe's (num=1, channels, height, width, packed data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from trainnet.data.datum import RecordError, datum_array, parse_datum
from trainnet.data.db import detect_backend, open_database
from trainnet.data.progress import Progress, track
from trainnet.errors import TrainnetError


def _key(key: bytes) -> str:
    return key.decode("utf-8", "replace")


def compute_image_mean(source: Path, backend: Optional[str] = None,
                       progress: Optional[Progress] = None) -> np.ndarray:
    """The mean image (C, H, W) float32 of the database at ``source`` (``backend`` LMDB or
    LEVELDB; detected from the folder when None).  Every record must have the first's shape."""
    source = Path(source)
    backend = backend.upper() if backend else detect_backend(source)
    if backend is None:
        raise TrainnetError(f"{source}: not a database folder (no LMDB data.mdb, no LevelDB CURRENT)")
    db = open_database(source, backend)
    keys = db.keys
    if not keys:
        raise TrainnetError(f"{source}: the database holds no records; there is no mean to take")
    total, first = None, keys[0]
    for key in track(keys, progress, f"mean of {source.name}", len(keys)):
        try:
            image = datum_array(parse_datum(db.get(key)))
        except RecordError as exc:
            raise TrainnetError(f"{source}: record {_key(key)!r}: {exc}") from None
        if total is None:
            total = np.zeros(image.shape, np.float32)
        elif image.shape != total.shape:
            raise TrainnetError(
                f"{source}: record {_key(key)!r} is {'x'.join(map(str, image.shape))} but the first "
                f"record ({_key(first)!r}) is {'x'.join(map(str, total.shape))}; a mean needs "
                "one shape (convert_imageset --resize makes one)")
        total += image  # float32 += uint8 or float32, element by element, as Caffe adds
    return total / np.float32(len(keys))


def channel_means(mean: np.ndarray) -> list[float]:
    """Caffe's ``mean_value channel [c]``: each channel's pixels summed in order in float32,
    divided by their count."""
    flat = np.asarray(mean, np.float32).reshape(mean.shape[0], -1)
    sums = np.cumsum(flat, axis=1, dtype=np.float32)[:, -1]
    return [float(s / np.float32(flat.shape[1])) for s in sums]
