"""Caffe's text log (glog lines, as Caffe's tools/extra/parse_log.py reads them) as a RunLog.

    I0210 13:39:22.381027 25210 solver.cpp:218] Iteration 100 (52.1 iter/s, 1.9s/100 iters), loss = 0.21
    I0210 13:39:22.381101 25210 solver.cpp:237]     Train net output #0: loss = 0.19 (* 1 = 0.19 loss)
    I0210 13:39:22.381140 25210 sgd_solver.cpp:105] Iteration 100, lr = 0.0099
    I0210 13:39:25.100000 25210 solver.cpp:330] Iteration 500, Testing net (#0)
    I0210 13:39:25.200000 25210 solver.cpp:397]     Test net output #0: accuracy = 0.97

"Iteration N, loss" is Caffe's smoothed loss (average_loss); the raw loss is the weighted sum of
the train net's loss outputs (the ``(* w = v loss)`` parts), the smoothed one where they are not
logged.  Seconds count from the log's first time stamp.  trainnet's own progress lines
("Iteration N (x iter/s), loss = X, lr = Y", "Iteration N, Testing net (#0): a = x, b = y")
read the same way.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from trainnet.tools.plot_log import RunLog, TrainPoint

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf))"
STAMP = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d(?:\.\d+)?)")
LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + NUMBER)
LR = re.compile(r"Iteration (\d+)\b.*\blr = " + NUMBER)
TRAIN_OUTPUT = re.compile(r"Train net output #\d+: (\S+) = " + NUMBER
                          + r"(?: \(\* " + NUMBER + r" = " + NUMBER + r" loss\))?")
TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)(?::\s*(.*))?$")
TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = " + NUMBER)
PAIR = re.compile(r"(\S+) = " + NUMBER)


class _Reader:
    def __init__(self, path: Path):
        self.run = RunLog(path)
        self.pending: list[list] = []     # [iteration, smoothed, raw parts, seconds] in log order
        self.lr: dict[int, float] = {}
        self.testing: tuple[int, int] | None = None
        self.start: datetime | None = None
        self.last: datetime | None = None

    def seconds(self, line: str) -> float | None:
        m = STAMP.match(line)
        if not m:
            return None
        month, day, hour, minute = (int(g) for g in m.groups()[:4])
        try:
            when = datetime(2000, month, day, hour, minute) + timedelta(seconds=float(m.group(5)))
        except ValueError:
            return None
        if self.last is not None and when < self.last - timedelta(days=180):
            when = when.replace(year=self.last.year + 1)  # the log ran across New Year
        self.start, self.last = self.start or when, when
        return (when - self.start).total_seconds()

    def line(self, line: str) -> None:
        seconds = self.seconds(line)
        if m := LOSS.search(line):
            self.pending.append([int(m.group(1)), float(m.group(2)), [], seconds])
        if m := LR.search(line):
            self.lr[int(m.group(1))] = float(m.group(2))
        if (m := TRAIN_OUTPUT.search(line)) and self.pending:
            part = m.group(4) if m.group(4) is not None else (m.group(2) if "loss" in m.group(1) else None)
            if part is not None:
                self.pending[-1][2].append(float(part))
        if m := TESTING.search(line):
            self.testing = int(m.group(1)), int(m.group(2))
            for name, value in PAIR.findall(m.group(3) or ""):
                self.run.add_test(self.testing[0], self.testing[1], name, float(value))
        elif (m := TEST_OUTPUT.search(line)) and self.testing is not None:
            self.run.add_test(*self.testing, m.group(1), float(m.group(2)))

    def finish(self) -> RunLog:
        for iteration, smoothed, parts, seconds in self.pending:
            raw = sum(parts) if parts else smoothed
            self.run.add_train(iteration, TrainPoint(raw, smoothed, self.lr.get(iteration), seconds))
        return self.run


def read_caffe_text(path: Path, text: str) -> RunLog:
    reader = _Reader(path)
    for line in text.splitlines():
        reader.line(line)
    return reader.finish()
