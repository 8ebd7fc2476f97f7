"""A run's log read into the series `trainnet plot` draws: training loss (raw and smoothed),
learning rate and seconds by iteration, and every scalar test output by test net and name.

Two kinds of log are read: trainnet's own ``<snapshot_prefix>_log.jsonl`` (events ``train``,
``test``, ``resume``; others ignored) and Caffe's text log (plot_caffe.py).  A resumed run
repeats iterations: the newest record of an iteration wins, and what the abandoned run logged
from the resume point on is dropped, so the curves show the run as it went on."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainnet.errors import TrainnetError


@dataclass
class TrainPoint:
    loss: float
    smoothed: float
    lr: float | None
    seconds: float | None


@dataclass
class RunLog:
    """One run: ``train`` by iteration, ``tests[(net, output)]`` by iteration."""

    path: Path
    train: dict[int, TrainPoint] = field(default_factory=dict)
    tests: dict[tuple[int, str], dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _offset: float = 0.0  # seconds before the latest resume: time goes on across a resume

    def resume(self, iteration: int, tests: bool = True) -> None:
        """The run restarted from ``iteration``: forget what was logged from there on (the
        tests too, unless some of the restarted run's tests may be in already)."""
        kept = [p.seconds for it, p in self.train.items() if it < iteration and p.seconds is not None]
        self.train = {it: p for it, p in self.train.items() if it < iteration}
        for values in self.tests.values() if tests else ():
            for it in [it for it in values if it >= iteration]:
                del values[it]
        self._offset = max(kept, default=0.0)

    def add_train(self, iteration: int, point: TrainPoint) -> None:
        if self.train and iteration <= max(self.train):  # a restart the log did not announce:
            self.resume(iteration, tests=False)          # its tests at `iteration` came first
        if point.seconds is not None:
            point.seconds += self._offset
        self.train[iteration] = point

    def add_test(self, iteration: int, net: int, name: str, value: float) -> None:
        self.tests.setdefault((net, name), {})[iteration] = value

    # --- the series drawn ------------------------------------------------------------------
    def iterations(self) -> np.ndarray:
        return np.array(sorted(self.train), dtype=np.int64)

    def train_series(self, what: str) -> np.ndarray:
        """``loss``, ``smoothed``, ``lr`` or ``seconds`` in iteration order (NaN where absent)."""
        values = [getattr(self.train[it], what) for it in sorted(self.train)]
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    def has_seconds(self) -> bool:
        return bool(self.train) and all(p.seconds is not None for p in self.train.values())

    def test_series(self, net: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, values) of one test output, in iteration order."""
        values = self.tests[(net, name)]
        its = sorted(values)
        return np.array(its, dtype=np.int64), np.array([values[i] for i in its], dtype=np.float64)

    def seconds_at(self, iterations: np.ndarray) -> np.ndarray:
        """Seconds at ``iterations``, read off the training records' times (interpolated)."""
        return np.interp(iterations, self.iterations(), self.train_series("seconds"))


def read_log(path: str | Path) -> RunLog:
    """A run log, trainnet's JSON lines or Caffe's text; one located error for a damaged one."""
    from trainnet.tools.plot_caffe import read_caffe_text

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TrainnetError(f"{path}: cannot read the log ({exc.strerror or exc})") from None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    run = read_json_lines(path, text) if first.startswith("{") else read_caffe_text(path, text)
    if not run.train:
        raise TrainnetError(f"{path}: no training records in the log (nothing to plot)")
    return run


def read_json_lines(path: Path, text: str) -> RunLog:
    run = RunLog(path)
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            if number == len(lines):  # no newline after it: the run stopped mid-write
                run.notes.append(f"{path}:{number}: the last line is cut off (the run stopped "
                                 "while writing it); plotted without it")
                continue
            raise TrainnetError(f"{path}:{number}: not a JSON record ({exc.msg}); the log is "
                                "damaged") from None
        try:
            _take(run, record)
        except (KeyError, TypeError, ValueError) as exc:
            why = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise TrainnetError(f"{path}:{number}: not a run log record ({why})") from None
    return run


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {value!r}, not a number")
    return float(value)


def _optional(record: dict, key: str) -> float | None:
    return None if record.get(key) is None else _number(record[key], key)


def _take(run: RunLog, record) -> None:
    if not isinstance(record, dict):
        raise TypeError(f"a {type(record).__name__}, not an object")
    event = record.get("event")
    if event == "resume":
        run.resume(int(_number(record["iter"], "iter")))
    elif event == "train":
        loss = _number(record["loss"], "loss")
        smoothed = _optional(record, "smoothed_loss")
        run.add_train(int(_number(record["iter"], "iter")),
                      TrainPoint(loss, loss if smoothed is None else smoothed,
                                 _optional(record, "lr"), _optional(record, "seconds")))
    elif event == "test" and isinstance(record.get("outputs"), dict):
        iteration, net = int(_number(record["iter"], "iter")), int(record.get("net", 0))
        for name, value in record["outputs"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                run.add_test(iteration, net, str(name), float(value))  # arrays are not drawn


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last ``window`` values at each point (fewer at the start), as Caffe's
    average_loss smooths the displayed loss."""
    if window <= 1 or values.size == 0:
        return values.copy()
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def finite(values: np.ndarray) -> bool:
    return any(math.isfinite(v) for v in values)
