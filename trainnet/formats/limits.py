"""What a reader may open, and allocate for the sizes a file declares.  Each is checked before
anything is read or allocated, so a corrupt or hostile file (a dataset of 2**40 values, a
decompression bomb, a pipe or /dev/zero where a file belongs) is refused at the cost of a
stat or of reading a header."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trainnet.errors import TrainnetError


def regular_file(path: Path, what: str = "file") -> int:
    """The size of ``path``, a regular file; anything else (missing, a folder, a device, a
    pipe, which could be read forever or block) is refused, ``what`` naming what it should be."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TrainnetError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise TrainnetError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise TrainnetError(f"{path}: is not a regular file ({_file_kind(st.st_mode)}), so not "
                            f"a {what}")
    return st.st_size


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """A regular file of at most ``limit`` bytes, read whole (and no further than that, should
    it grow meanwhile); one line for any failure."""
    size = regular_file(path, what)
    if size > limit:
        raise TrainnetError(f"{path}: is {size_text(size)}; a {what} may hold at most "
                            f"{size_text(limit)}")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise TrainnetError(f"{path}: holds more than {size_text(limit)}, the most a {what} may")
    return data


def read_text(path: Path, what: str, limit: int = 2**30) -> str:
    """A UTF-8 text file of at most ``limit`` bytes (``read_bytes``); one line for any failure."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TrainnetError(f"{path}: not UTF-8 text (line {line}, byte "
                            f"{data[exc.start:exc.start + 1]!r}), not a {what}") from None


def physical_memory() -> int:
    """This machine's memory in bytes (2**40 where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 2**40


def memory_limit() -> int:
    """The most one array read from a file may take: half of this machine's memory."""
    return physical_memory() // 2


def size_text(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def check_allocation(where: str, need: int, what: str = "its values") -> None:
    """Refuse ``need`` bytes for ``what`` of ``where`` when they exceed ``memory_limit()``."""
    if need > memory_limit():
        raise TrainnetError(f"{where}: {what} would take {size_text(need)}, more than half of this "
                            f"machine's memory ({size_text(physical_memory())}): a corrupt file?")
