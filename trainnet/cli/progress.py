"""How long `trainnet data` steps show progress: a tqdm bar when stderr is a terminal and tqdm
(the ``progress`` extra) is installed, else Caffe's plain lines ("Processed 10000 files.")."""

from __future__ import annotations

import sys
from typing import Optional

from trainnet.cli.common import echo

MB = 1 << 20
BYTES_EVERY = 32 * MB  # a plain line per 32 MB downloaded


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _amount(count: int, unit: str) -> str:
    return f"{count / MB:.1f} MB" if unit == "bytes" else f"{count} {unit}"


class Reporter:
    """A progress callback (``trainnet.data.progress.Progress``) and a log callback (``log``).

    ``every`` is the number of files between plain lines; ``terminal`` (default: whether stderr
    is one) chooses the bar."""

    def __init__(self, every: int = 1000, terminal: Optional[bool] = None, stream=None):
        self.every = every
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty() if terminal is None else terminal
        self.tqdm = _tqdm() if terminal else None
        self.bar = None
        self.shown = 0  # the count of the last plain line

    def __call__(self, task: str, done: int, total: Optional[int], unit: str) -> None:
        if self.tqdm is None:
            self._plain(task, done, total, unit)
            return
        if self.bar is None or self.bar.desc != task:
            self.close()
            self.bar = self.tqdm(total=total, desc=task, file=self.stream, leave=True,
                                 unit="B" if unit == "bytes" else " " + unit,
                                 unit_scale=unit == "bytes", dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if done == total:
            self.close()

    def _plain(self, task: str, done: int, total: Optional[int], unit: str) -> None:
        if done == 0:
            echo(f"{task}: {_amount(total, unit)}" if total else f"{task}:")
            self.shown = 0
            return
        every = BYTES_EVERY if unit == "bytes" else self.every
        if done // every > self.shown // every or (done == total and done != self.shown):
            echo(f"Downloaded {_amount(done, unit)}." if unit == "bytes"
                 else f"Processed {done} {unit}.")
            self.shown = done

    def log(self, line: str) -> None:
        """A line of the run's log, printed above the bar when one is showing."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            echo(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
