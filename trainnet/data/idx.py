"""IDX files (MNIST's format), plain or gzip-compressed, read into validated NumPy arrays.

An IDX file is ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dims, then the
big-endian payload.  Compression is detected by gzip's magic bytes, not by the file name.
``read_idx_header`` reads only the header (cheap: the compiler calls it for shapes) and checks
that the file can hold what it declares; ``read_idx`` streams the payload into an array of the
declared size (a gzip stream is never inflated past it: a decompression bomb costs the
header's figure, at most ``memory_limit()``), and caches the result per process keyed by
(resolved path, mtime, size), so a train and a test net reading one file decode it once.
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
from trainnet.formats import limits
from trainnet.formats.limits import size_text

GZIP_MAGIC = b"\x1f\x8b"
DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_BYTES = 2**32  # the most data one IDX file may declare (MNIST's largest holds 47 MB)
GZIP_RATIO = 1032  # deflate's largest expansion, output bytes per input byte
CHUNK = 1 << 22    # bytes inflated per read


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
    limits.regular_file(path, "file")
    try:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_MAGIC
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


def memory_limit() -> int:
    """The most data one IDX file may declare: the array is held whole in memory, so at most
    ``MAX_BYTES`` and half of this machine's memory."""
    return min(MAX_BYTES, limits.memory_limit())


def _check_declared(header: IdxHeader, file_size: int) -> None:
    """Refuse a header declaring more data than the file can hold, before anything is read:
    a gzip stream inflates at most ``GZIP_RATIO`` bytes per byte, and no IDX file is read past
    ``memory_limit()``."""
    want = header.payload_bytes
    declared = f"the header declares {header.describe()} ({size_text(want)} of data)"
    if header.compressed and want > GZIP_RATIO * file_size:
        raise _fail(header.path, f"{declared}, more than {file_size} bytes of gzip can hold: a "
                    "corrupt header")
    if want > memory_limit():
        raise _fail(header.path, f"{declared}, more than trainnet reads from one IDX file "
                    f"({size_text(memory_limit())}): a corrupt header, or a dataset to convert to "
                    "a database")


def read_idx_header(path: str | Path) -> IdxHeader:
    """The header alone; checks that the file can hold the data it declares (for a plain file,
    that its size matches exactly)."""
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
    size = path.stat().st_size
    if not compressed:
        _check_length(header, size - header.offset)
    _check_declared(header, size)
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
    """The payload, streamed into an array of the size the header declares (checked first
    against the file's size): a gzip stream is never inflated past it, so a stream that holds
    more (a decompression bomb) costs no more than the header's figure."""
    header = read_idx_header(path)
    raw = np.empty(header.payload_bytes, np.uint8)
    try:
        with _open(path, header.compressed) as f:
            f.read(header.offset)
            got = _fill(f, memoryview(raw))
            more = f.read(1)
    except EOFError:
        raise _fail(path, "truncated gzip stream (the download may be incomplete)") from None
    except (OSError, zlib.error) as exc:
        raise _fail(path, f"corrupt gzip data ({exc})") from None
    if got < len(raw):
        _check_length(header, got)
    if more:
        raise _fail(path, f"more data after the {header.describe()} the header declares: a "
                    "corrupt header, or not an IDX file")
    data = raw.view(header.dtype.newbyteorder(">")).reshape(header.shape)
    if data.dtype != header.dtype:  # multi-byte types: to native byte order, in place
        data = data.byteswap(inplace=True).view(header.dtype)
    data.flags.writeable = False  # shared through the cache
    return data


def _fill(f, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; returns the bytes read."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:got + CHUNK])
        if not n:
            break
        got += n
    return got


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
