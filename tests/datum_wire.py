"""An independent reader for what `trainnet data` writes: databases opened with the ``lmdb``
and ``plyvel`` packages themselves, and Caffe's Datum decoded from the protobuf wire format
by hand (no trainnet code, no protobuf runtime)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

DATUM_FIELDS = {1: "channels", 2: "height", 3: "width", 4: "data", 5: "label", 6: "float_data",
                7: "encoded"}


def read_db(path: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) in cursor order, by the folder's own kind."""
    path = Path(path)
    if (path / "data.mdb").is_file():
        import lmdb

        env = lmdb.open(str(path), readonly=True, lock=False)
        try:
            with env.begin() as txn:
                return list(txn.cursor())
        finally:
            env.close()
    import plyvel

    db = plyvel.DB(str(path), create_if_missing=False)
    try:
        return list(db.iterator())
    finally:
        db.close()


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode_datum(buf: bytes) -> dict:
    """The Datum's fields by name, plus ``order``: the field numbers as they appear."""
    datum: dict = {"order": [], "float_data": []}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        datum["order"].append(number)
        name = DATUM_FIELDS[number]
        if wire == 0:
            value, pos = _varint(buf, pos)
            if value >= 1 << 63:  # a negative int32 is sign-extended to 64 bits
                value -= 1 << 64
            datum[name] = bool(value) if name == "encoded" else value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            chunk, pos = buf[pos:pos + size], pos + size
            if name == "float_data":  # packed floats
                datum[name].extend(struct.unpack(f"<{size // 4}f", chunk))
            else:
                datum[name] = chunk
        elif wire == 5:
            datum[name].append(struct.unpack("<f", buf[pos:pos + 4])[0])
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire} for field {number}")
    return datum


def datum_pixels(datum: dict) -> np.ndarray:
    """A raw Datum's uint8 pixels as (C, H, W)."""
    shape = (datum["channels"], datum["height"], datum["width"])
    return np.frombuffer(datum["data"], np.uint8).reshape(shape)


def legacy_blob_bytes(array: np.ndarray) -> bytes:
    """A BlobProto as compute_image_mean writes it: num=1, channels, height, width, then
    the values packed as little-endian floats (field 5)."""
    c, h, w = array.shape
    payload = np.asarray(array, "<f4").tobytes()
    header = b"".join(bytes([tag]) + _encode_varint(v) for tag, v in
                      ((0x08, 1), (0x10, c), (0x18, h), (0x20, w)))
    return header + b"\x2a" + _encode_varint(len(payload)) + payload


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)
