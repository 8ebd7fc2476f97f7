"""`trainnet train --resume [PREFIX|DIR]`: the newest complete snapshot of a run, a damaged or
half-written newer one skipped with a note, a clear error when there is nothing; the JSON log
marks the resume."""

from __future__ import annotations

import json
import os

import numpy as np

from hostile import assert_one_error, cli
from synthetic import write_project
from trainnet.formats import tensorfile


def _log(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out/tiny_log.jsonl").read_text().splitlines()]


def test_resume_takes_the_newest_snapshot_and_the_log_marks_it(tmp_path):
    solver = write_project(tmp_path, max_iter=20, snapshot=10)
    assert cli("train", solver).code == 0
    out = cli("train", solver, "--resume", "--set", "max_iter=30")
    assert out.code == 0, out.stderr
    assert f"Resumed from {tmp_path / 'out/tiny_iter_20.solverstate'} at iteration 20" in out.stderr
    assert "iterations 20 -> 30" in out.stderr
    resumes = [r for r in _log(tmp_path) if r["event"] == "resume"]
    assert resumes == [{"event": "resume", "iter": 20,
                        "from": str(tmp_path / "out/tiny_iter_20.solverstate")}]
    events = [r["event"] for r in _log(tmp_path)]
    assert events.index("resume") < max(i for i, e in enumerate(events) if e == "train")


def test_resume_skips_a_damaged_newest_snapshot(tmp_path):
    solver = write_project(tmp_path, max_iter=30, snapshot=10)
    assert cli("train", solver).code == 0
    state = tmp_path / "out/tiny_iter_30.solverstate"
    state.write_bytes(state.read_bytes()[:100])         # cut short
    os.remove(tmp_path / "out/tiny_iter_20.safetensors")  # a state without its weights
    out = cli("train", solver, "--resume", tmp_path / "out/tiny", "--set", "max_iter=12")
    assert out.code == 0, out.stderr
    skipped = [line for line in out.stderr.splitlines() if "skipping" in line]
    assert len(skipped) == 2 and "tiny_iter_30.solverstate" in skipped[0]
    assert "tiny_iter_20.solverstate" in skipped[1]
    assert "Resumed from" in out.stderr and "at iteration 10" in out.stderr
    assert _log(tmp_path)[-1]["event"] != "resume"
    assert [r["iter"] for r in _log(tmp_path) if r["event"] == "resume"] == [10]


def test_resume_from_a_folder_matches_an_uninterrupted_run(tmp_path):
    solver = write_project(tmp_path / "a", max_iter=20, snapshot=10)
    assert cli("train", solver).code == 0
    whole = tensorfile.read(tmp_path / "a/out/tiny_iter_20.safetensors", "weights").tensors
    for path in (tmp_path / "a/out").glob("tiny_iter_20*"):
        path.unlink()
    out = cli("train", solver, "--resume", tmp_path / "a/out")
    assert out.code == 0, out.stderr
    assert "at iteration 10" in out.stderr
    again = tensorfile.read(tmp_path / "a/out/tiny_iter_20.safetensors", "weights").tensors
    for key in whole:
        np.testing.assert_array_equal(whole[key], again[key])


def test_nothing_to_resume_is_one_line(tmp_path):
    solver = write_project(tmp_path, max_iter=5)
    out = cli("train", solver, "--resume")
    assert_one_error(out, "nothing to resume", str(tmp_path / "out/tiny"))
    out = cli("train", solver, "--resume", tmp_path / "out/tiny", "--weights", "w.safetensors")
    assert_one_error(out, "give one of --weights, --snapshot and --resume")


def test_a_resumed_run_keeps_the_first_runs_config_and_writes_its_own_beside(tmp_path):
    solver = write_project(tmp_path, max_iter=20, snapshot=10)
    assert cli("train", solver).code == 0
    first = (tmp_path / "out/tiny_run_solver.yaml").read_text()
    first_net = (tmp_path / "out/tiny_run_net.yaml").read_text()
    out = cli("train", solver, "--resume", "--set", "max_iter=30", "--set", "base_lr=0.02")
    assert out.code == 0, out.stderr
    assert (tmp_path / "out/tiny_run_solver.yaml").read_text() == first
    assert (tmp_path / "out/tiny_run_net.yaml").read_text() == first_net
    again = (tmp_path / "out/tiny_run_solver_from_iter_20.yaml").read_text()
    assert "base_lr: 0.02" in again and "net: tiny_run_net_from_iter_20.yaml" in again
    assert (tmp_path / "out/tiny_run_net_from_iter_20.yaml").is_file()
    out = cli("train", solver, "--snapshot", tmp_path / "out/tiny_iter_10.solverstate",
              "--set", "max_iter=15")
    assert out.code == 0, out.stderr
    assert (tmp_path / "out/tiny_run_solver.yaml").read_text() == first
    assert (tmp_path / "out/tiny_run_solver_from_iter_10.yaml").is_file()


def test_resuming_a_finished_run_trains_nothing_and_writes_nothing(tmp_path):
    solver = write_project(tmp_path, max_iter=20, snapshot=10)
    assert cli("train", solver).code == 0
    out_dir = tmp_path / "out"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out_dir.iterdir()}
    out = cli("train", solver, "--resume")
    assert out.code == 0, out.stderr
    assert "already at max_iter 20: nothing to train" in out.stderr + out.stderr
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out_dir.iterdir()}
    assert after == before


def test_resume_from_a_folder_prefers_the_solvers_own_prefix(tmp_path):
    solver = write_project(tmp_path, max_iter=20, snapshot=10)
    assert cli("train", solver, "--set", "max_iter=10").code == 0
    assert cli("train", solver, "--set", f"snapshot_prefix={tmp_path / 'out/other'}").code == 0
    out = cli("train", solver, "--resume", tmp_path / "out", "--set", "max_iter=12")
    assert out.code == 0, out.stderr
    text = out.stdout + out.stderr
    assert f"Resumed from {tmp_path / 'out/tiny_iter_10.solverstate'} at iteration 10" in text


def test_resume_from_a_folder_of_several_other_runs_is_ambiguous(tmp_path):
    solver = write_project(tmp_path, max_iter=10, snapshot=10)
    for name in ("a", "b"):
        assert cli("train", solver, "--set", f"snapshot_prefix={tmp_path / 'out' / name}").code == 0
    out = cli("train", solver, "--resume", tmp_path / "out")
    assert_one_error(out, "several runs", str(tmp_path / "out/a"), str(tmp_path / "out/b"),
                     "--resume PREFIX")
    # one other prefix alone is taken
    for path in (tmp_path / "out").glob("b_*"):
        path.unlink()
    out = cli("train", solver, "--resume", tmp_path / "out", "--set", "max_iter=12")
    assert out.code == 0, out.stderr
    assert "out/a_iter_10.solverstate at iteration 10" in out.stderr + out.stderr


def test_a_state_of_another_net_is_said_to_be_so(tmp_path):
    solver = write_project(tmp_path, max_iter=10, snapshot=10)
    assert cli("train", solver, "--set", "net.ip1.num_output=5").code == 0
    out = cli("train", solver, "--resume", "--set", "max_iter=12")
    assert out.code != 0
    text = out.stdout + out.stderr
    assert "not a state of this net and solver" in text and "another net" in text
    assert "not a complete snapshot" not in text
