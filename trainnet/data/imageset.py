"""Caffe's ``convert_imageset``: a list of images and labels into a database of Datums.

The list has one ``path label`` per line, split at the last space (a path may hold spaces);
images are read from ``root/path``.  Records are keyed ``%08d_<path>`` by their position in
the list (after the optional seeded shuffle), so a skipped image leaves a gap, as in Caffe.
A raw record holds the CHW pixels in BGR order (one grey channel with ``gray``), resized
bilinearly by Pillow when asked (Pillow smooths as it shrinks where OpenCV's INTER_LINEAR
samples, so pixels differ from Caffe's, most when shrinking a lot).  An
encoded record holds the file's own bytes when nothing changes the pixels and the file's format
is the one asked for; otherwise the image is re-encoded (JPEG at OpenCV's default quality 95).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainnet.data.datum import RecordError, decode_image, encode_datum
from trainnet.data.db import create_database
from trainnet.data.lists import ListEntry, read_list
from trainnet.data.progress import Log, Progress, quiet_log, track
from trainnet.errors import TrainnetError

ENCODE_TYPES = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}  # --encode-type -> Pillow format
JPEG_QUALITY = 95  # OpenCV's imencode default


@dataclass(frozen=True)
class ImagesetOptions:
    resize: Optional[tuple[int, int]] = None  # (height, width)
    gray: bool = False
    encoded: bool = False
    encode_type: Optional[str] = None  # a key of ENCODE_TYPES; implies encoded, as in Caffe
    check_size: bool = False
    skip_bad: bool = False


@dataclass
class ImagesetResult:
    written: int = 0
    skipped: list[str] = field(default_factory=list)  # "list:line: path: why", one per image


def _format_of(payload: bytes) -> str:
    try:
        with Image.open(io.BytesIO(payload)) as img:
            return img.format
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise RecordError(f"not a readable image ({exc})") from None


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """A CHW uint8 image (grey, or BGR as ``decode_image`` gives) as an image file."""
    pixels = image[0] if image.shape[0] == 1 else image[::-1].transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(
        buffer, fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def image_record(path: Path, label: int, options: ImagesetOptions) -> tuple[bytes, tuple]:
    """A serialized Datum of the image at ``path`` and its decoded (C, H, W) shape."""
    if not path.is_file():
        raise RecordError("no such image file")
    color = not options.gray
    if not (options.encoded or options.encode_type):
        image = decode_image(str(path), color, options.resize)
        return encode_datum(image, label), image.shape
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"cannot be read ({exc.strerror or exc})") from None
    own = _format_of(payload)
    image = decode_image(payload, color, options.resize)  # also proves the file decodes
    target = ENCODE_TYPES[options.encode_type] if options.encode_type else own
    if options.resize is None and not options.gray and target == own:
        return encode_datum(None, label, encoded=payload), image.shape
    if target not in ENCODE_TYPES.values():
        raise RecordError(f"a {own} image cannot be re-encoded as itself; give --encode-type "
                          "jpg or png")
    return encode_datum(None, label, encoded=encode_image(image, target)), image.shape


def _ordered(entries: list[ListEntry], shuffle: bool, seed: Optional[int]) -> list[ListEntry]:
    if shuffle:
        entries = list(entries)
        random.Random(seed).shuffle(entries)
    return entries


def _records(entries: list[ListEntry], list_file: Path, root: Path, options: ImagesetOptions,
             result: ImagesetResult, log: Log, progress: Optional[Progress],
             task: str) -> Iterator[tuple[bytes, bytes]]:
    first_shape = None
    for position, entry in enumerate(track(entries, progress, task, len(entries))):
        where = f"{list_file}:{entry.line}: {root / entry.path}"
        try:
            value, shape = image_record(root / entry.path, entry.label, options)
        except RecordError as exc:
            if not options.skip_bad:
                raise TrainnetError(f"{where}: {exc} (--skip-bad skips such images)") from None
            result.skipped.append(f"{where}: {exc}")
            log(f"skipped {where}: {exc}")
            continue
        if options.check_size:
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise TrainnetError(f"{where}: --check-size: the image is "
                                    f"{'x'.join(map(str, shape))}, the first one "
                                    f"{'x'.join(map(str, first_shape))}")
        result.written += 1
        yield f"{position:08d}_{entry.path}".encode(), value


def convert_imageset(list_file: Path, root: Path, out: Path, backend: str = "LMDB",
                     options: ImagesetOptions = ImagesetOptions(), shuffle: bool = False,
                     seed: Optional[int] = None, log: Optional[Log] = None,
                     progress: Optional[Progress] = None) -> ImagesetResult:
    """Write the database ``out`` from the list; returns how many were written and skipped."""
    list_file, root, out = Path(list_file), Path(root), Path(out)
    log = log or quiet_log
    if options.encode_type and options.encode_type not in ENCODE_TYPES:
        raise TrainnetError(f"encode type: must be one of {', '.join(ENCODE_TYPES)}, "
                            f"got {options.encode_type!r}")
    entries = _ordered(read_list(list_file), shuffle, seed)
    log(f"A total of {len(entries)} images.")
    if options.encode_type and not options.encoded:
        log("encode_type specified, assuming encoded=true.")
    result = ImagesetResult()
    with create_database(out, backend) as db:
        for key, value in _records(entries, list_file, root, options, result, log, progress,
                                   out.name):
            db.put(key, value)
    return result
