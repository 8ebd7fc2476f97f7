"""Signals with real processes: SIGTERM and SIGINT stop with a snapshot, SIGHUP snapshots and
goes on (Caffe's --sigint-effect/--sighup-effect), a stop interrupts a test, Ctrl-C outside
training is one line and exit 130, and two runs never share a snapshot prefix."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from hostile import Outcome, assert_one_error, trainnet_process
from synthetic import write_project
from trainnet.cli.signals import handled

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


STAMP = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d\.\d{3} ")  # the time before each line


def read_until(proc, prefix: str, lines: list[str], timeout: float = 120) -> str:
    """Lines of ``proc``'s stderr (the run's log, as glog's) up to the first starting with
    ``prefix`` after its time stamp (kept in ``lines``)."""
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        lines.append(line)
        if STAMP.sub("", line, 1).startswith(prefix):
            return line
        assert time.monotonic() < deadline, f"no line {prefix!r} in time"
    raise AssertionError(f"{prefix!r} never came:\n{''.join(lines)}\n{proc.stdout.read()}")


def finish(proc, lines: list[str], timeout: float = 120) -> Outcome:
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, "".join(lines) + err)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_snapshots_and_exits(tmp_path, sig, code):
    proc = trainnet_process("train", write_project(tmp_path, max_iter=100000))
    lines = []
    read_until(proc, "Iteration 20 ", lines)
    proc.send_signal(sig)
    outcome = finish(proc, lines)
    name = signal.Signals(sig).name
    assert outcome.code == code and not outcome.stdout.strip(), outcome
    assert all(STAMP.match(line) for line in outcome.stderr.splitlines()), outcome.stderr
    assert f"({name})" in outcome.stderr and "Snapshotting to" in outcome.stderr
    states = list((tmp_path / "out").glob("tiny_iter_*.solverstate"))
    assert len(states) == 1 and not (tmp_path / "out/tiny.lock").exists()


def test_sighup_snapshots_and_goes_on(tmp_path):
    proc = trainnet_process("train", write_project(tmp_path, max_iter=100000))
    lines = []
    read_until(proc, "Iteration 20 ", lines)
    proc.send_signal(signal.SIGHUP)
    line = read_until(proc, "SIGHUP: snapshot at iteration", lines)
    read_until(proc, "Snapshotting to", lines)
    read_until(proc, "Iteration", lines)  # still training
    proc.send_signal(signal.SIGINT)
    outcome = finish(proc, lines)
    assert outcome.code == 130
    hup = int(line.split()[-1])
    assert (tmp_path / f"out/tiny_iter_{hup}.solverstate").is_file()


def test_sighup_effect_stop_and_sigint_effect_none(tmp_path):
    proc = trainnet_process("train", write_project(tmp_path, max_iter=100000),
                            "--sigint-effect", "none", "--sighup-effect", "stop")
    lines = []
    read_until(proc, "Iteration 20 ", lines)
    proc.send_signal(signal.SIGINT)  # ignored
    read_until(proc, "Iteration 40 ", lines)
    proc.send_signal(signal.SIGHUP)
    outcome = finish(proc, lines)
    assert outcome.code == 128 + signal.SIGHUP and "(SIGHUP)" in outcome.stderr


def test_a_stop_interrupts_a_test(tmp_path):
    solver = write_project(tmp_path, max_iter=100)
    solver.write_text(solver.read_text().replace("test_iter: 4", "test_iter: 1000000"))
    proc = trainnet_process("train", solver)
    lines = []
    read_until(proc, "Solving", lines)
    time.sleep(1.0)  # well inside the million-batch test at iteration 0
    proc.send_signal(signal.SIGTERM)
    outcome = finish(proc, lines, timeout=60)
    assert outcome.code == 143, outcome
    assert "Iteration 0: test interrupted" in outcome.stderr
    assert (tmp_path / "out/tiny_iter_0.solverstate").is_file()


def test_ctrl_c_outside_training_is_one_line(tmp_path):
    write_project(tmp_path, max_iter=1)
    proc = trainnet_process("train", tmp_path / "solver.yaml")
    assert proc.wait(timeout=120) == 0
    weights = tmp_path / "out/tiny_iter_1.safetensors"
    proc = trainnet_process("test", "--model", tmp_path / "net.yaml", "--weights", weights,
                            "--iterations", 10_000_000)
    time.sleep(3.0)  # starting up or testing: either way one line and 130
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert_one_error(Outcome(proc.returncode, out, err), "interrupted", code=130)


def test_two_runs_on_one_prefix(tmp_path):
    solver = write_project(tmp_path, max_iter=100000)
    first = trainnet_process("train", solver)
    lines = []
    read_until(first, "Iteration 0,", lines)
    second = trainnet_process("train", solver)
    out, err = second.communicate(timeout=120)
    assert_one_error(Outcome(second.returncode, out, err), "is in use by another run",
                     f"pid {first.pid}")
    first.send_signal(signal.SIGTERM)
    assert finish(first, lines).code == 143


class FakeSolver:
    def __init__(self):
        self.stop_requested = False
        self.calls = []

    def request_stop(self, why):
        self.stop_requested = True
        self.calls.append(("stop", why))

    def request_snapshot(self, why):
        self.calls.append(("snapshot", why))


def test_a_second_stop_signal_aborts():
    solver = FakeSolver()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="a second SIGINT"):
        with handled(solver, "stop", "snapshot"):
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
    assert solver.calls == [("snapshot", "SIGUSR1"), ("stop", "SIGTERM")]
    assert signal.getsignal(signal.SIGTERM) is before  # handlers put back

