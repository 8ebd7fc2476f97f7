"""How the dataset tools report: a progress callback and a log callback, both optional.

Library code never prints.  A long step calls ``progress(task, done, total, unit)`` as it
goes (``total`` None when unknown, ``unit`` "files" or "bytes"); the step has ended when
``done == total`` (a step of unknown length reports its count as the total at the end);
what it would say in passing ("present, checksum ok", "skipped a bad image") goes to
``log(line)``.  The command line turns these into a tqdm bar or Caffe's plain lines.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, TypeVar

Progress = Callable[[str, int, Optional[int], str], None]
Log = Callable[[str], None]
T = TypeVar("T")


def quiet_progress(task: str, done: int, total: Optional[int], unit: str) -> None:
    """A progress callback that reports nothing."""


def quiet_log(line: str) -> None:
    """A log callback that says nothing."""


def track(items: Iterable[T], progress: Optional[Progress], task: str,
          total: Optional[int] = None, unit: str = "files") -> Iterator[T]:
    """Yield ``items``, reporting each one done (after the caller's work on it) to ``progress``,
    and the end."""
    progress = progress or quiet_progress
    done = 0
    progress(task, 0, total, unit)
    for item in items:
        yield item
        done += 1
        progress(task, done, total, unit)
    if total != done:
        progress(task, done, done, unit)
