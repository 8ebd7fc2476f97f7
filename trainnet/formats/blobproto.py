"""Caffe's BlobProto: reading protobuf files safely, blobs as arrays, binaryproto means.

``read_message`` reads any of Caffe's binary protobuf files (caffemodel, binaryproto,
solverstate) with the checks every one needs (size limit, empty, HDF5 by mistake, corrupt).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from trainnet.errors import TrainnetError
from trainnet.formats import caffe_pb
from trainnet.formats.atomic import atomic_write
from trainnet.formats.limits import regular_file

MAX_BYTES = 2**31 - 1  # protobuf refuses larger messages; Caffe reads at most INT_MAX bytes too
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
LEGACY_DIMS = ("num", "channels", "height", "width")


def read_bytes(path: Path, what: str, hdf5_hint: str = "") -> bytes:
    """The bytes of a binary protobuf file; a missing, huge, empty or HDF5 file is refused."""
    path = Path(path)
    size = regular_file(path, f"{what} file")
    if size > MAX_BYTES:
        raise TrainnetError(f"{path}: {size / 2**30:.1f} GiB is more than a protobuf message may "
                            f"hold (2 GiB, also Caffe's limit); it cannot be a {what} file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise TrainnetError(f"{path}: empty file, not a {what} file")
    if data.startswith(HDF5_MAGIC):
        raise TrainnetError(f"{path}: an HDF5 file, not a {what} file in Caffe's binaryproto "
                            f"format{hdf5_hint}")
    return data


def parse(message, data: bytes, path: Path, what: str):
    """``message`` filled from ``data``; a decode failure names the file and what it should be."""
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        reason = " ".join(str(exc).split())[:300]
        raise TrainnetError(f"{path}: not a {what}, or a truncated or corrupt one "
                            f"({reason})") from None
    return message


def unknown_fields(message) -> list[tuple[int, int]]:
    """(field number, wire type) of each field of ``message`` (not of its sub-messages) that
    its schema lacks."""
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:  # protobuf < 4.22
        return [(f.field_number, f.wire_type) for f in message.UnknownFields()]
    return [(f.field_number, f.wire_type) for f in UnknownFieldSet(message)]


def text(value: str | bytes, where: str) -> str:
    """A string field's value.  Some protobuf runtimes (upb) hand back a proto2 string that is
    not valid UTF-8 as bytes instead of refusing the message; such a field is refused here."""
    if isinstance(value, bytes):
        raise TrainnetError(f"{where} is not valid UTF-8 text ({value[:40]!r}): a corrupt file")
    return value


def blob_shape(blob) -> tuple[int, ...]:
    """``shape``, or in old files the 4-D num/channels/height/width."""
    if any(blob.HasField(f) for f in LEGACY_DIMS):
        return tuple(getattr(blob, f) for f in LEGACY_DIMS)
    return tuple(blob.shape.dim)


def blob_array(blob, where: str) -> np.ndarray:
    """A BlobProto's values as float32 in its shape; ``double_data`` when present, else
    ``data`` (as Caffe)."""
    foreign = unknown_fields(blob)
    if foreign:  # Caffe's BlobProto has no other fields: a tag a corrupt byte changed
        raise TrainnetError(f"{where}: holds a field (number {foreign[0][0]}) that Caffe's "
                            "BlobProto has not: a corrupt blob")
    shape = blob_shape(blob)
    if any(d < 0 for d in shape):
        raise TrainnetError(f"{where}: negative dimension in shape {shape}")
    if len(blob.double_data):
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        values = np.array(blob.data, dtype=np.float32)
    count = math.prod(shape)
    if values.size != count:
        raise TrainnetError(f"{where}: shape {shape} needs {count} values but the blob holds "
                            f"{values.size}")
    return values.reshape(shape)


def load_blob(path: str | Path) -> np.ndarray:
    """A binaryproto BlobProto (a mean image, InfogainLoss's H) as float32 in its shape."""
    path = Path(path)
    data = read_bytes(path, "blob (.binaryproto)")
    blob = parse(caffe_pb.BlobProto(), data, path, "blob (.binaryproto)")
    if not (len(blob.data) or len(blob.double_data) or blob.HasField("shape")
            or blob.HasField("num")):
        raise TrainnetError(f"{path}: holds no blob: not a binaryproto blob file, or a corrupt one")
    array = blob_array(blob, str(path))
    if not array.size:
        raise TrainnetError(f"{path}: the blob has shape {array.shape} and no values: a truncated "
                            "or corrupt blob file")
    return array


def load_mean(path: str | Path) -> np.ndarray:
    """A mean image for transform_param.mean_file, as (C, H, W) float32.  Caffe's mean files
    (compute_image_mean) hold one image as (1, C, H, W)."""
    mean = load_blob(path)
    if mean.ndim == 4 and mean.shape[0] == 1:
        return mean[0]
    if mean.ndim == 3:
        return mean
    raise TrainnetError(f"{path}: a mean file holds one image, shape (1, C, H, W); this one "
                        f"has shape {mean.shape}")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def blob_proto(array: np.ndarray, legacy: bool = False):
    """A BlobProto with packed float ``data`` and ``shape`` (or, with ``legacy``, the 4-D
    num/channels/height/width fields that compute_image_mean writes).  The values go in as the
    packed field's wire bytes (tag 5, length, little-endian floats), which protobuf merges in
    one pass instead of one Python float at a time."""
    a = np.asarray(array, dtype="<f4")  # not ascontiguousarray: it makes a scalar 1-D
    blob = caffe_pb.BlobProto()
    if legacy:
        if a.ndim > 4:
            raise ValueError(f"a legacy blob has at most 4 axes, got shape {a.shape}")
        for field, dim in zip(LEGACY_DIMS, (1,) * (4 - a.ndim) + a.shape):
            setattr(blob, field, int(dim))
    else:
        blob.shape.dim.extend(int(d) for d in a.shape)
    if a.size:
        blob.MergeFromString(b"\x2a" + varint(a.nbytes) + a.tobytes(order="C"))
    return blob


def save_blob(path: str | Path, array: np.ndarray, legacy: bool = False) -> None:
    """Write ``array`` as a binaryproto BlobProto (a mean for Caffe's mean_file must be
    (1, C, H, W)), atomically; ``legacy`` as in ``blob_proto``."""
    atomic_write(Path(path), blob_proto(array, legacy).SerializeToString())
