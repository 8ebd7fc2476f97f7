"""IDX files (MNIST's format), plain or gzip-compressed, read into validated NumPy arrays.

An IDX file is ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dims, then the
big-endian payload.  Compression is detected by gzip's magic bytes, not by the file name.
``read_idx_header`` reads only the header (cheap: the compiler calls it for shapes);
``read_idx`` decodes and checks the payload length, and caches the result per process keyed
by (resolved path, mtime, size), so a train and a test net reading one file decode it once.
"""

from __future__ import annotations

import gzip
import math
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainnet.errors import TrainnetError

GZIP_MAGIC = b"\x1f\x8b"
DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclass(frozen=True)
class IdxHeader:
    path: Path
    dtype: np.dtype        # native byte order
    shape: tuple[int, ...]
    offset: int            # bytes before the payload
    compressed: bool

    @property
    def payload_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        return f"{'x'.join(map(str, self.shape))} {self.dtype.name}"


def _fail(path: Path, what: str) -> TrainnetError:
    return TrainnetError(f"{path}: {what}")


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_MAGIC
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a folder, not an IDX file") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None


def _parse_header(path: Path, head: bytes, compressed: bool) -> IdxHeader:
    where = " (after gunzip)" if compressed else ""
    if len(head) < 4:
        raise _fail(path, f"truncated: {len(head)} bytes{where}, too short for an IDX header")
    if head[0] != 0 or head[1] != 0:
        raise _fail(path, f"not an IDX file: starts with bytes {head[:4].hex(' ')}{where}, "
                    "expected 00 00 <type> <ndim>")
    code, ndim = head[2], head[3]
    if code not in DTYPES:
        raise _fail(path, f"unknown IDX data type code 0x{code:02x}; known: "
                    + ", ".join(f"0x{c:02x} ({d.name})" for c, d in DTYPES.items()))
    if ndim == 0:
        raise _fail(path, "IDX header declares 0 dimensions")
    offset = 4 + 4 * ndim
    if len(head) < offset:
        raise _fail(path, f"truncated inside the header: {ndim} dims need {offset} bytes, "
                    f"the file holds {len(head)}{where}")
    shape = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
    return IdxHeader(path, DTYPES[code].newbyteorder("="), shape, offset, compressed)


def _open(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def read_idx_header(path: str | Path) -> IdxHeader:
    """The header alone; for a plain file also checks that the file size matches it."""
    path = Path(path)
    compressed = _is_gzip(path)
    try:
        with _open(path, compressed) as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as exc:
        raise _fail(path, f"corrupt gzip data ({exc})") from None
    header = _parse_header(path, head, compressed)
    if not compressed:
        _check_length(header, path.stat().st_size - header.offset)
    return header


def _check_length(header: IdxHeader, got: int) -> None:
    want = header.payload_bytes
    if got < want:
        raise _fail(header.path, f"truncated: the header declares {header.describe()} "
                    f"({want} bytes of data) but the file holds {got}")
    if got > want:
        raise _fail(header.path, f"{got - want} unexpected bytes after the {header.describe()} "
                    "data the header declares")


def _decode(path: Path) -> np.ndarray:
    compressed = _is_gzip(path)
    try:
        raw = path.read_bytes()
        if compressed:
            raw = gzip.decompress(raw)
    except EOFError:
        raise _fail(path, "truncated gzip stream (the download may be incomplete)") from None
    except (OSError, zlib.error) as exc:
        raise _fail(path, f"corrupt gzip data ({exc})") from None
    header = _parse_header(path, raw[:4 + 4 * (raw[3] if len(raw) > 3 else 0)], compressed)
    _check_length(header, len(raw) - header.offset)
    data = np.frombuffer(raw, DTYPES[raw[2]], offset=header.offset).reshape(header.shape)
    if data.dtype != header.dtype:  # multi-byte types: to native byte order
        data = data.astype(header.dtype)
    data.flags.writeable = False  # shared through the cache
    return data


_CACHE: dict[tuple[str, int, int], np.ndarray] = {}
_LOCK = threading.Lock()


def read_idx(path: str | Path) -> np.ndarray:
    """The whole array (read-only, native byte order), decoded at most once per file version."""
    path = Path(path)
    try:
        resolved = path.resolve()
        st = os.stat(resolved)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    key = (str(resolved), st.st_mtime_ns, st.st_size)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        data = _decode(path)
        for stale in [k for k in _CACHE if k[0] == key[0]]:
            del _CACHE[stale]
        _CACHE[key] = data
        return data


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip when ``compress``, or by default when the name ends .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {d.newbyteorder("="): c for c, d in DTYPES.items()}
    if array.dtype not in codes:
        raise TypeError(f"IDX cannot hold dtype {array.dtype}")
    raw = (bytes([0, 0, codes[array.dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
           + array.astype(array.dtype.newbyteorder(">")).tobytes())
    if compress if compress is not None else path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
