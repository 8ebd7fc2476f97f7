"""Writing a file so that a reader sees the old content or the new, never a part."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from trainnet.errors import TrainnetError


def atomic_write(path: Path, payload: bytes) -> None:
    """Write to a temporary file of a name no other writer uses, beside ``path``; flush it to
    disk, rename it over ``path``, then flush the folder so that the rename survives a crash."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name[:200]}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        sync_folder(path.parent)
    except BaseException as exc:  # a failed write, or Ctrl-C: no temporary file is left
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if not isinstance(exc, OSError):
            raise
        raise TrainnetError(f"{path}: cannot write ({exc.strerror or exc}); nothing was "
                            "replaced") from None


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename, a new file) to disk, where the system allows it."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

