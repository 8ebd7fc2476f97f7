"""Writing a file so that a reader sees the old content or the new, never a part."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from trainnet.errors import TrainnetError


def atomic_write(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TrainnetError(f"{path}: cannot write ({exc.strerror or exc}); nothing was replaced") from None
