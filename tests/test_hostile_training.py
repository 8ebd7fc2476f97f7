"""Nothing lost while training: divergence stops with a located message and a snapshot of the
last good state; the snapshot prefix is Caffe's, locked for one run, pruned on request; the log
is checked before the first iteration and its failure mid-run snapshots and stops."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from hostile import assert_one_error, cli
from synthetic import write_project
from trainnet.errors import TrainnetError
from trainnet.formats.atomic import atomic_write
from trainnet.netcfg import load_solver
from trainnet.solver.outputs import RunFiles
from trainnet.solver.solver import Solver


def project(tmp_path: Path, replace: dict[str, str] = {}, **kw) -> Path:
    solver = write_project(tmp_path, **kw)
    text = solver.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    solver.write_text(text)
    return solver


def test_a_net_without_a_loss_is_reported(tmp_path):
    solver = write_project(tmp_path, max_iter=1)
    net = tmp_path / "net.yaml"
    net.write_text(net.read_text().replace("type: SoftmaxWithLoss", "type: Softmax")
                   .replace("bottom: [ip2, label], top: loss", "bottom: ip2, top: loss"))
    solver.write_text(solver.read_text().replace("test_interval: 50", "test_interval: 0")
                      .replace("test_iter: 4\n", ""))
    lines = []
    Solver(load_solver(solver), log=lines.append)
    assert any("has no loss" in line for line in lines)


def test_a_folder_prefix_writes_as_caffe_does(tmp_path):
    solver = project(tmp_path, {f"snapshot_prefix: {tmp_path}/out/tiny": f"snapshot_prefix: {tmp_path}/snaps/"},
                     max_iter=4, snapshot=2)
    Solver(load_solver(solver)).solve()
    names = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert names == ["_iter_2.safetensors", "_iter_2.solverstate", "_iter_4.safetensors",
                     "_iter_4.solverstate", "_log.jsonl"]  # no lock left behind


def test_snapshot_keep_keeps_the_newest(tmp_path):
    solver = project(tmp_path, {"random_seed: 7": "random_seed: 7\nsnapshot_keep: 2"},
                     max_iter=10, snapshot=2)
    lines = []
    Solver(load_solver(solver), log=lines.append).solve()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["tiny_iter_10.safetensors", "tiny_iter_10.solverstate", "tiny_iter_8.safetensors",
                     "tiny_iter_8.solverstate", "tiny_log.jsonl"]
    assert sum("Removed" in line for line in lines) == 6


def test_snapshot_every_iteration_warns(tmp_path):
    lines = []
    Solver(load_solver(write_project(tmp_path, max_iter=3, snapshot=1)), log=lines.append).solve()
    assert any(line.startswith("Warning: snapshot: 1 writes") for line in lines)


def test_a_prefix_is_locked_for_one_run(tmp_path):
    first = RunFiles(str(tmp_path / "out/run"))
    first.open()
    try:
        with pytest.raises(TrainnetError, match=f"in use by another run .pid {os.getpid()}"):
            RunFiles(str(tmp_path / "out/run")).open()
        solver = write_project(tmp_path, max_iter=2, prefix="out/run")
        assert_one_error(cli("train", solver), "is in use by another run")
        assert not (tmp_path / "out/run_iter_2.safetensors").exists()
    finally:
        first.close()
    assert not (tmp_path / "out/run.lock").exists()
    assert cli("train", solver).code == 0


@pytest.mark.parametrize("prefix, message", [
    ("afile/run", "cannot create the folder"),       # a file where a folder should be
    ("x" * 300, "File name too long"),
])
def test_an_unusable_prefix_is_one_error_before_training(tmp_path, prefix, message):
    (tmp_path / "afile").write_text("")
    solver = write_project(tmp_path, max_iter=2, prefix=prefix)
    outcome = cli("train", solver)
    assert_one_error(outcome, message)
    assert "Iteration" not in outcome.stdout + outcome.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_error_before_training(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    solver = write_project(tmp_path, max_iter=2, prefix="ro/run")
    assert_one_error(cli("train", solver), "Permission denied")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_log_that_fills_the_disk_stops_with_a_snapshot(tmp_path):
    solver = write_project(tmp_path, max_iter=30)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/tiny_log.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    outcome = cli("train", solver)
    assert_one_error(outcome, "tiny_log.jsonl: cannot write the run's log (No space left on device)",
                     "stopped at iteration 0 after a snapshot")
    assert (tmp_path / "out/tiny_iter_0.solverstate").is_file()


def test_concurrent_atomic_writes_never_clobber(tmp_path):
    target = tmp_path / "f.bin"
    payloads = [bytes([i]) * 200_000 for i in range(4)]
    errors = []

    def write(p):
        try:
            for _ in range(25):
                atomic_write(target, p)
        except TrainnetError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_test_refuses_non_finite_outputs_naming_the_first_blob(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    assert cli("train", solver).code == 0
    net = tmp_path / "net.yaml"
    net.write_text(net.read_text() + "  - {name: shift, type: Power, bottom: ip2, top: shifted, "
                   "shift: -1000}\n  - {name: log, type: Log, bottom: shifted, top: logged}\n")
    outcome = cli("test", "--model", net, "--weights", tmp_path / "out/tiny_iter_2.safetensors",
                  "--iterations", 2)
    assert_one_error(outcome, "output 'logged' is not finite",
                     "first non-finite: layer 'log' (Log) forward: its top 'logged'")


def test_test_refuses_a_deploy_net_whose_inputs_nothing_fills(tmp_path):
    net = tmp_path / "deploy.yaml"
    net.write_text("name: D\nlayer:\n  - {name: data, type: Input, top: data, shape: {dim: [1, 3]}}\n"
                   "  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 2}\n"
                   "  - {name: prob, type: Softmax, bottom: ip, top: prob}\n")
    weights = tmp_path / "w.safetensors"
    save_file({"ip.0": np.ones((2, 3), np.float32), "ip.1": np.zeros(2, np.float32)}, str(weights))
    assert_one_error(cli("test", "--model", net, "--weights", weights),
                     "nothing fills the input blob data", "classify runs a deploy net")


def test_snapshot_keep_leaves_later_iterations_alone(tmp_path):
    solver = project(tmp_path, {"random_seed: 7": "random_seed: 7\nsnapshot_keep: 2"},
                     max_iter=6, snapshot=2)
    (tmp_path / "out").mkdir()
    for suffix in (".safetensors", ".solverstate"):  # another run's, or the one resumed from
        (tmp_path / f"out/tiny_iter_100{suffix}").write_bytes(b"")
    Solver(load_solver(solver)).solve()
    names = sorted(p.name for p in (tmp_path / "out").glob("*_iter_*"))
    assert names == ["tiny_iter_100.safetensors", "tiny_iter_100.solverstate", "tiny_iter_4.safetensors",
                     "tiny_iter_4.solverstate", "tiny_iter_6.safetensors", "tiny_iter_6.solverstate"]
