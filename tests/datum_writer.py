"""Datasets written without trainnet: Caffe's Datum encoded to the protobuf wire format by hand
and stored with the ``lmdb`` and ``plyvel`` packages themselves, for the readers' tests."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from datum_wire import _encode_varint


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | wire) + payload


def _int(number: int, value: int) -> bytes:
    return _field(number, 0, _encode_varint(value & (1 << 64) - 1 if value < 0 else value))


def datum_bytes(image: Optional[np.ndarray] = None, label: int = 0, *, encoded: bytes = None,
                floats: bool = False, shape: Optional[tuple] = None) -> bytes:
    """A Datum: ``image`` (C, H, W) as uint8 ``data`` or, with ``floats``, unpacked
    ``float_data`` (as caffe.proto declares it); or an image file's bytes as ``encoded``.
    ``shape`` overrides the stated shape (to write inconsistent records)."""
    out = b""
    if encoded is None:
        c, h, w = shape or image.shape
        out += _int(1, c) + _int(2, h) + _int(3, w)
        if floats:
            out += b"".join(_field(6, 5, struct.pack("<f", v)) for v in image.reshape(-1))
        else:
            data = np.ascontiguousarray(image, np.uint8).tobytes()
            out += _field(4, 2, _encode_varint(len(data)) + data)
    else:
        out += _field(4, 2, _encode_varint(len(encoded)) + encoded)
    out += _int(5, label)
    if encoded is not None:
        out += _int(7, 1)
    return out


def write_lmdb(path: Path, records: Iterable[tuple[bytes, bytes]]) -> Path:
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for key, value in records:
            txn.put(key, value)
    env.close()
    return path


def write_leveldb(path: Path, records: Iterable[tuple[bytes, bytes]]) -> Path:
    import plyvel

    db = plyvel.DB(str(path), create_if_missing=True)
    for key, value in records:
        db.put(key, value)
    db.close()
    return path
