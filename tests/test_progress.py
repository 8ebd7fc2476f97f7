"""Progress of `train` and `test`: time-stamped lines always, a tqdm bar (iteration, loss, rate,
ETA) on stderr only when it is a terminal; `test` covers its data source once by default;
--threads reaches the BLAS."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest
import yaml

from hostile import cli, run_process
from synthetic import write_project
from trainnet.cli.progress import RunProgress, stamp
from trainnet.cli.threads import apply_threads
from trainnet.launch import set_thread_env, thread_count
from trainnet.netcfg import load_solver
from trainnet.solver.solver import Solver

STAMPED = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d\.\d{3} ")


def test_stamp_is_glog_like():
    assert re.fullmatch(r"I\d{4} \d\d:\d\d:\d\d\.\d{3} Iteration 1", stamp("Iteration 1"))
    assert stamp("Warning: x").startswith("W")


def test_train_lines_are_stamped_and_plain_without_a_terminal(tmp_path):
    out = cli("train", write_project(tmp_path, max_iter=20, snapshot=10))
    assert out.code == 0, out.stderr
    lines = out.stderr.splitlines()  # the log on stderr, as glog's; no bar: not a terminal
    assert lines and all(STAMPED.match(line) for line in lines), lines
    assert any(" Iteration 10 (" in line for line in lines)
    assert out.stdout == ""  # stdout is for results: train has none


def test_a_bar_follows_training_on_a_terminal(tmp_path):
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    progress = RunProgress(terminal=True, stream=stream, every=0)
    s = Solver(load_solver(write_project(tmp_path, max_iter=30)), log=progress.log)
    progress.follow(s)
    s.solve()
    progress.close()
    shown = stream.getvalue()
    assert "train" in shown and "it/s" in shown and "loss=" in shown and "/30" in shown
    assert "30/30" in shown  # moved after each step: the last one too
    assert s.iter == 30


def test_no_bar_without_a_terminal(tmp_path):
    progress = RunProgress(terminal=False, stream=io.StringIO())
    s = Solver(load_solver(write_project(tmp_path, max_iter=3)), log=progress.log)
    progress.follow(s)
    assert progress.bar is None and not s.callbacks


def test_test_covers_its_source_once(tmp_path):
    solver = write_project(tmp_path, max_iter=10)
    assert cli("train", solver).code == 0
    weights = tmp_path / "out/tiny_iter_10.safetensors"
    out = cli("test", "--model", tmp_path / "net.yaml", "--weights", weights)
    assert out.code == 0, out.stderr
    assert "Testing 4 batches: the data source once" in out.stderr  # 128 images, batches of 32
    assert re.search(r"^accuracy = [\d.]+$", out.stdout, re.M)
    # stdout holds the results alone (the log lines, "Loaded weights ...", go to stderr)
    assert all(re.match(r"^\w+ = ", line) for line in out.stdout.splitlines()), out.stdout
    out = cli("test", "--model", tmp_path / "net.yaml", "--weights", weights, "--iterations", 2)
    assert out.code == 0 and "Testing" not in out.stdout + out.stderr


def test_threads_from_the_command_line_before_numpy():
    assert thread_count(["train", "s.yaml", "--threads", "3"], {}) == "3"
    assert thread_count(["train", "--threads=2"], {"TRAINNET_THREADS": "5"}) == "2"
    assert thread_count(["train"], {"TRAINNET_THREADS": "5"}) == "5"
    assert thread_count(["train", "--threads", "x"], {}) is None
    env = {}
    set_thread_env(["test", "--threads", "4"], env)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "4"


def test_threads_in_process_says_how_or_why_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # as if not installed
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert apply_threads(2).startswith("BLAS threads: 2 (")
    assert apply_threads(3).startswith("Warning: --threads 3: the BLAS threads are unchanged")
    assert apply_threads(None) is None


def test_threads_through_the_trainnet_command(tmp_path):
    """A real ``trainnet`` process: the BLAS variables set before NumPy loads, and the data
    layers' workers (none set in the net) in the net as run."""
    out = run_process("train", write_project(tmp_path, max_iter=2), "--threads", "2")
    assert out.code == 0, out.stderr
    assert "BLAS threads: 2 (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS set before NumPy loaded)" \
        in out.stderr
    net = yaml.safe_load((tmp_path / "out/tiny_run_net.yaml").read_text())
    assert [l.get("workers") for l in net["layer"] if l["type"] == "Data"] == [2, 2]


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal")
def test_the_trainnet_command_shows_a_bar_on_a_terminal(tmp_path):
    """stderr a terminal (100 columns): the bar with iteration, total, loss and rate there,
    the time-stamped lines above it; nothing on stdout."""
    pytest.importorskip("tqdm")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    shown: list[bytes] = []

    def read():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = subprocess.Popen([sys.executable, "-m", "trainnet", "train",
                             str(write_project(tmp_path, max_iter=1000))],
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    out, _ = proc.communicate(timeout=120)
    os.close(slave)
    reader.join(5)
    os.close(master)
    bar = b"".join(shown).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "/1000 [" in bar and "it/s" in bar and "loss=" in bar, bar[-500:]
    assert out == ""  # the time-stamped lines go above the bar, on stderr
    assert "Optimization Done." in bar
