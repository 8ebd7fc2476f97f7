"""Where the dataset tools write: never over an existing output, and never a half-written one.

A database (``create_database``) and a folder of files (CIFAR-10 as PNGs) are written into a
``StagedFolder``: a hidden folder beside the target, renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from trainnet.errors import TrainnetError


def refuse_existing(paths: Iterable[Path]) -> None:
    """Refuse before any work starts when one of the outputs exists."""
    for path in paths:
        if Path(path).exists():
            raise TrainnetError(f"{path}: already exists; remove it or choose another output "
                                "(an output is never written over)")


class StagedFolder:
    """A fresh hidden folder beside ``path`` (``tmp``), renamed to ``path`` by ``finish`` and
    removed by ``abort``.  As a context manager it gives ``tmp`` and finishes when the block ends
    normally, aborts when it raises."""

    def __init__(self, path: Path):
        self.path = Path(path)
        refuse_existing([self.path])
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            self.tmp.mkdir(parents=True)
        except OSError as exc:
            raise TrainnetError(f"{self.path.parent}: cannot create a folder there ({exc.strerror})") from None

    def finish(self) -> None:
        try:
            refuse_existing([self.path])
            os.replace(self.tmp, self.path)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind, value, tb) -> None:
        self.finish() if kind is None else self.abort()
