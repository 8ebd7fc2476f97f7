"""`trainnet train --set KEY=VALUE`: solver and layer fields overridden for one run, errors that
name the --set, and the solver and nets as run saved beside the snapshots, from which the run
repeats exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hostile import assert_one_error, cli
from synthetic import NET, write_project
from trainnet.formats import tensorfile
from trainnet.netcfg.overrides import parse_override


def _weights(path: Path) -> dict[str, np.ndarray]:
    return tensorfile.read(path, "weights").tensors


def test_overrides_change_what_trains_and_the_saved_config_repeats_it(tmp_path):
    solver = write_project(tmp_path, max_iter=20, snapshot=10)
    out = cli("train", solver, "--set", "net.conv1.num_output=6", "--set", "base_lr=0.02",
              "--set", "net.data.batch_size: 8")
    assert out.code == 0, out.stderr
    first = _weights(tmp_path / "out/tiny_iter_20.safetensors")
    assert first["conv1.0"].shape == (6, 1, 3, 3)  # 4 in net.yaml
    saved = yaml.safe_load((tmp_path / "out/tiny_run_solver.yaml").read_text())
    assert saved["base_lr"] == 0.02 and saved["net"] == "tiny_run_net.yaml"
    net = yaml.safe_load((tmp_path / "out/tiny_run_net.yaml").read_text())
    assert [l["batch_size"] for l in net["layer"] if l["name"] == "data"] == [8, 8]
    assert all(Path(l["source"]).is_absolute() for l in net["layer"] if l["name"] == "data")
    # the files in the run's folder repeat the run: the same weights, bit for bit
    again = cli("train", tmp_path / "out/tiny_run_solver.yaml",
                "--set", f"snapshot_prefix={tmp_path / 'again/tiny'}")
    assert again.code == 0, again.stderr
    second = _weights(tmp_path / "again/tiny_iter_20.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert (tmp_path / "net.yaml").read_text() == NET  # the files are untouched


@pytest.mark.parametrize("given, fragments", [
    ("net.conv9.num_output=32", ["--set net.conv9.num_output=32: no layer 'conv9'",
                                 "did you mean 'conv1'"]),
    ("net.conv1.num_outpt=32", ["--set net.conv1.num_outpt=32: layer 'conv1' (Convolution)",
                                "unknown key (did you mean 'num_output'?)"]),
    ("net.conv1.num_output=many", ["--set net.conv1.num_output=many", "expects an integer"]),
    ("base_lr=-1", ["--set base_lr=-1: base_lr: must be >= 0"]),
    ("bse_lr=1", ["--set bse_lr=1: bse_lr: unknown key (did you mean 'base_lr'?)"]),
    ("lr_policy=steep", ["--set lr_policy=steep"]),
    ("base_lr", ["--set base_lr: expects KEY=VALUE"]),
    ("train_net.conv1.num_output=3", ["no train_net", "net.LAYER.FIELD"]),
    ("net.conv1=3", ["expects net.LAYER.FIELD=VALUE"]),
])
def test_a_bad_override_is_one_line_naming_it(tmp_path, given, fragments):
    out = cli("train", write_project(tmp_path, max_iter=1), "--set", given)
    assert_one_error(out, *fragments)
    assert not (tmp_path / "out").exists()


def test_the_same_key_twice_is_refused(tmp_path):
    out = cli("train", write_project(tmp_path, max_iter=1), "--set", "base_lr=1",
              "--set", "base_lr=2")
    assert_one_error(out, "--set base_lr is given twice")


def test_values_are_yaml():
    assert parse_override("stepvalue=[10, 20]").value == [10, 20]
    assert parse_override("net.conv1.weight_filler={type: gaussian, std: 0.1}").value == \
        {"type": "gaussian", "std": 0.1}
    assert parse_override("base_lr=1e-3").value == 0.001
    assert parse_override("snapshot_prefix=out/a=b").value == "out/a=b"
    assert parse_override("train_state.level=2").path == ("train_state", "level")


def test_train_net_and_test_net_files(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    text = solver.read_text().replace("net: net.yaml", "train_net: net.yaml\ntest_net: net.yaml")
    solver.write_text(text)
    out = cli("train", solver, "--set", "train_net.ip1.num_output=5",
              "--set", "test_net.ip1.num_output=5")
    assert out.code == 0, out.stderr
    assert (tmp_path / "out/tiny_run_train_net.yaml").is_file()
    assert (tmp_path / "out/tiny_run_test_net0.yaml").is_file()
    saved = yaml.safe_load((tmp_path / "out/tiny_run_solver.yaml").read_text())
    assert saved["train_net"] == "tiny_run_train_net.yaml"
    assert saved["test_net"] == ["tiny_run_test_net0.yaml"]
    assert _weights(tmp_path / "out/tiny_iter_2.safetensors")["ip1.0"].shape == (5, 36)


def test_the_saved_config_never_overwrites_a_users_files(tmp_path):
    """A solver lenet_solver.yaml with snapshot_prefix lenet in its own folder: the as-run files
    take other names, and the user's solver and net (comments and all) stay as they were."""
    solver = write_project(tmp_path, max_iter=2)
    user = tmp_path / "lenet_solver.yaml"
    user.write_text("# my comments\n" + solver.read_text().replace(
        f"snapshot_prefix: {tmp_path / 'out/tiny'}", "snapshot_prefix: lenet")
        .replace("net: net.yaml", "net: lenet_net.yaml"))
    (tmp_path / "lenet_net.yaml").write_text("# my net\n" + NET)
    before = {p: p.read_text() for p in (user, tmp_path / "lenet_net.yaml")}
    out = cli("train", "lenet_solver.yaml", cwd=tmp_path)
    assert out.code == 0, out.stderr
    assert {p: p.read_text() for p in before} == before
    assert (tmp_path / "lenet_run_solver.yaml").read_text().startswith("# trainnet as-run config")
    assert (tmp_path / "lenet_run_net.yaml").read_text().startswith("# trainnet as-run config")
    # a second run overwrites its own as-run files
    assert cli("train", "lenet_solver.yaml", "--set", "max_iter=1", cwd=tmp_path).code == 0


def test_a_file_trainnet_did_not_write_is_refused_before_training(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    (tmp_path / "out").mkdir()
    mine = tmp_path / "out/tiny_run_net.yaml"
    mine.write_text("# mine\n")
    out = cli("train", solver)
    assert_one_error(out, str(mine), "not written by trainnet")
    assert mine.read_text() == "# mine\n"
    assert not list((tmp_path / "out").glob("*_iter_*"))


def test_the_solver_read_is_never_overwritten(tmp_path):
    """Running the as-run solver again on its own prefix would write over the file read."""
    solver = write_project(tmp_path, max_iter=2)
    assert cli("train", solver).code == 0
    saved = tmp_path / "out/tiny_run_solver.yaml"
    text = saved.read_text()
    out = cli("train", saved)
    assert_one_error(out, str(tmp_path / "out/tiny_run_"), "this run reads it")
    assert saved.read_text() == text


def test_the_saved_config_says_what_else_repeating_the_run_needs(tmp_path):
    solver = write_project(tmp_path, max_iter=4, snapshot=2)
    assert cli("train", solver, "--set", "max_iter=2").code == 0
    weights = tmp_path / "out/tiny_iter_2.safetensors"
    out = cli("train", solver, "--weights", weights, "--threads", "1",
              "--set", f"snapshot_prefix={tmp_path / 'ft/tiny'}")
    assert out.code == 0, out.stderr
    head = (tmp_path / "ft/tiny_run_solver.yaml").read_text().split("\nnet:")[0]
    assert f"initial weights: {weights}" in head
    assert "resumed from: nothing" in head
    assert "--threads 1: give the same count for bit-exact results" in head
    out = cli("train", solver, "--resume")
    assert out.code == 0, out.stderr
    head = (tmp_path / "out/tiny_run_solver_from_iter_2.yaml").read_text().split("\nnet:")[0]
    assert f"resumed from: {tmp_path / 'out/tiny_iter_2.solverstate'} (iteration 2)" in head
    assert "initial weights: none" in head
    assert "threads: unset" in head and "set --threads N to repeat bit for bit" in head
    assert yaml.safe_load((tmp_path / "out/tiny_run_solver_from_iter_2.yaml").read_text())


def test_list_elements_by_index(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    out = cli("train", solver, "--set", "net.conv1.param.0.lr_mult=3", "--set", "test_iter.0=3")
    assert out.code == 0, out.stderr
    saved = yaml.safe_load((tmp_path / "out/tiny_run_solver.yaml").read_text())
    assert saved["test_iter"] == [3]
    net = yaml.safe_load((tmp_path / "out/tiny_run_net.yaml").read_text())
    conv = next(l for l in net["layer"] if l["name"] == "conv1")
    assert conv["param"][0]["lr_mult"] == 3 and conv["param"][1]["lr_mult"] == 2
    out = cli("train", solver, "--set", "net.conv1.param.2.lr_mult=3")
    assert_one_error(out, "--set net.conv1.param.2.lr_mult=3", "param has 2 element(s)",
                     "out of range")
    out = cli("train", solver, "--set", "test_iter.5=3")
    assert_one_error(out, "--set test_iter.5=3", "test_iter has 1 element(s)")


def test_several_test_net_files_by_index(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    (tmp_path / "net2.yaml").write_text(NET.replace("name: Tiny", "name: Tiny2"))
    text = solver.read_text().replace("net: net.yaml", "train_net: net.yaml\n"
                                      "test_net: [net.yaml, net2.yaml]")
    solver.write_text(text.replace("test_iter: 4", "test_iter: [4, 4]"))
    out = cli("train", solver, "--set", "test_net.1.drop1.dropout_ratio=0.3",
              "--set", "test_net.0.data@TEST.batch_size=8")
    assert out.code == 0, out.stderr
    saved = yaml.safe_load((tmp_path / "out/tiny_run_solver.yaml").read_text())
    assert saved["test_net"] == ["tiny_run_test_net0.yaml", "tiny_run_test_net1.yaml"]
    first = yaml.safe_load((tmp_path / "out/tiny_run_test_net0.yaml").read_text())
    second = yaml.safe_load((tmp_path / "out/tiny_run_test_net1.yaml").read_text())
    assert first["name"] == "Tiny" and second["name"] == "Tiny2"
    assert [l["batch_size"] for l in first["layer"] if l["name"] == "data"] == [16, 8]
    assert [l["dropout_ratio"] for l in second["layer"] if l["name"] == "drop1"] == [0.3]


def test_a_layer_name_in_both_phases_is_said_once(tmp_path):
    solver = write_project(tmp_path, max_iter=2)
    out = cli("train", solver, "--set", "net.data.batch_size=8")
    assert out.code == 0, out.stderr
    text = out.stdout + out.stderr
    assert text.count("--set net.data.batch_size: 2 layers named 'data' (TRAIN, TEST) changed") == 1
    out = cli("train", solver, "--set", "net.data@TRAIN.batch_size=8")
    assert out.code == 0, out.stderr
    assert "layers named" not in out.stdout + out.stderr
    net = yaml.safe_load((tmp_path / "out/tiny_run_net.yaml").read_text())
    assert [l["batch_size"] for l in net["layer"] if l["name"] == "data"] == [8, 32]
    out = cli("train", solver, "--set", "net.data@VAL.batch_size=8")
    assert_one_error(out, "expects LAYER@TRAIN or LAYER@TEST")
