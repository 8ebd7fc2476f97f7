"""How long commands show progress: a tqdm bar when stderr is a terminal and tqdm (the
``progress`` extra) is installed, else Caffe's plain lines ("Processed 10000 files.") for
`trainnet data`, and time-stamped lines for `train` and `test`."""

from __future__ import annotations

import sys
import time
from typing import Optional

import click

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


def stamp(line: str, now: Optional[float] = None) -> str:
    """``line`` with a glog-like prefix, as Caffe's own output has: ``I1203 19:20:01.123 ``
    (``W`` for a warning): the local date and time to the millisecond."""
    now = time.time() if now is None else now
    ms = int(now % 1 * 1000)
    level = "W" if line.startswith("Warning") else "I"
    return f"{level}{time.strftime('%m%d %H:%M:%S', time.localtime(now))}.{ms:03d} {line}"


class RunProgress:
    """What ``train`` and ``test`` show while they run: a bar (iteration, loss, it/s, ETA) on
    stderr when it is a terminal and tqdm is installed; the run's lines, time-stamped, on
    stderr (above the bar) either way, as glog writes Caffe's; stdout is for results."""

    def __init__(self, terminal: Optional[bool] = None, stream=None, every: float = 0.1):
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty() if terminal is None else terminal
        self.tqdm = _tqdm() if terminal else None
        self.bar = None
        self.every = every  # seconds between redraws of the bar

    def log(self, line: str) -> None:
        """A line of the run's log, time-stamped, on stderr (above the bar), as glog writes
        Caffe's: stdout keeps only results (``test``'s outputs)."""
        line = stamp(line)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            click.echo(line, err=True)

    def start(self, desc: str, total: int, done: int = 0) -> None:
        if self.tqdm is not None and total > done:
            self.close()
            self.bar = self.tqdm(total=total, initial=done, desc=desc, file=self.stream,
                                 unit="it", dynamic_ncols=True, leave=False,
                                 mininterval=self.every)

    def to(self, done: int, loss: Optional[float] = None) -> None:
        """Move the bar to ``done`` iterations (with the smoothed loss when given)."""
        if self.bar is not None:
            if loss is not None:
                self.bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)
            self.bar.update(done - self.bar.n)

    def follow(self, solver) -> None:
        """A bar over the solver's iterations, moved after each (to N/N after the last)."""
        if self.tqdm is None:
            return
        self.start("train", solver.cfg.max_iter, solver.iter)
        step = solver.step_once

        def stepped() -> None:  # the solver's step, then the bar: iterations done, smoothed loss
            try:
                step()
            finally:
                losses = solver.losses
                self.to(solver.iter, sum(losses) / len(losses) if losses else None)

        solver.step_once = stepped

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
