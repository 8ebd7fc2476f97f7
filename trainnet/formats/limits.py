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
        raise TrainnetError(f"{path}: a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise TrainnetError(f"{path}: not a regular file (a device, a pipe or a socket), so not "
                            f"a {what}")
    return st.st_size


def read_text(path: Path, what: str, limit: int = 2**30) -> str:
    """A UTF-8 text file of at most ``limit`` bytes, read whole; one line for any failure."""
    size = regular_file(path, what)
    if size > limit:
        raise TrainnetError(f"{path}: {size_text(size)}, more than a {what} may be "
                            f"({size_text(limit)})")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        return data.decode("utf-8")
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise TrainnetError(f"{path}: not UTF-8 text (byte {exc.start}: "
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
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n:,} bytes"


def check_allocation(where: str, need: int, what: str = "its values") -> None:
    """Refuse ``need`` bytes for ``what`` of ``where`` when they exceed ``memory_limit()``."""
    if need > memory_limit():
        raise TrainnetError(f"{where}: {what} would take {size_text(need)}, more than half of this "
                            f"machine's memory ({size_text(physical_memory())}): a corrupt file?")
