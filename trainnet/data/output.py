"""Where the dataset tools write: never over an existing output, and never a half-written one.

A database is staged by ``create_database``; a folder of files (CIFAR-10 as PNGs) by
``staged_folder``, which fills a hidden folder beside the target and renames it into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from trainnet.errors import TrainnetError


def refuse_existing(paths: Iterable[Path]) -> None:
    """Refuse before any work starts when one of the outputs exists."""
    for path in paths:
        if Path(path).exists():
            raise TrainnetError(f"{path}: already exists; remove it or choose another output "
                                "(an output is never written over)")


@contextlib.contextmanager
def staged_folder(path: Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``path``, renamed to ``path`` when the block ends normally
    and removed when it raises."""
    path = Path(path)
    refuse_existing([path])
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise TrainnetError(f"{path.parent}: cannot create a folder there ({exc.strerror})") from None
    try:
        yield tmp
        refuse_existing([path])
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
