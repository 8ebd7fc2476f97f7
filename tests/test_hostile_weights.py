"""Weights and resume are never accepted silently (issue 10), through the command line: every
bad weights file or solver state ends in one clean error line and a non-zero exit, and a
fine-tuning load names each blob left to its filler."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile import assert_one_error, cli
from synthetic import write_project
from trainnet.solver import snapshot as snap


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny project trained 20 iterations, snapshots at 10 and 20 (trainnet's format)."""
    folder = tmp_path_factory.mktemp("tiny")
    outcome = cli("train", write_project(folder, max_iter=20, snapshot=10))
    assert outcome.code == 0, outcome.stderr
    return folder


@pytest.fixture
def project(run, tmp_path) -> Path:
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    (tmp_path / "solver.yaml").write_text((run / "solver.yaml").read_text().replace(str(run), str(tmp_path)))
    return tmp_path


def weights_of(project: Path, it: int = 20) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in snap.read_tensors(project / f"out/tiny_iter_{it}.safetensors",
                                                      "weights").items()}


def write(path: Path, tensors: dict, **metadata) -> Path:
    snap.save_tensors(path, tensors, {"format": "trainnet-weights", **metadata})
    return path


def test_a_test_needs_every_blob(project):
    tensors = weights_of(project)
    del tensors["ip2.1"]
    outcome = cli("test", "--model", project / "net.yaml", "--weights",
                  write(project / "half.safetensors", tensors), "--iterations", 1)
    assert_one_error(outcome, "half.safetensors", "lacks 1 of the net's 6 parameter blobs: ip2.1")



@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("ip2.1"), "lacks 1 of the net's 6 parameter blobs: ip2.1"),
    (lambda t: t.update({"conv1": t["ip2.1"]}), "key 'conv1' is not a parameter blob's name"),
    (lambda t: t["ip1.0"].__setitem__((0, 0), np.nan), "ip1.0"),
])
def test_convert_to_a_caffemodel_needs_every_blob(project, change, message):
    tensors = weights_of(project)
    change(tensors)
    out = project / "out.caffemodel"
    outcome = cli("convert", write(project / "w.safetensors", tensors), out, "--model",
                  project / "net.yaml")
    assert_one_error(outcome, message)
    assert not out.exists()

def test_fine_tuning_names_each_blob_left_to_its_filler(project):
    tensors = weights_of(project)
    del tensors["ip2.1"], tensors["conv1.0"], tensors["conv1.1"]
    tensors["old_classifier.0"] = np.zeros((3, 3), np.float32)
    half = write(project / "half.safetensors", tensors)
    outcome = cli("train", project / "solver.yaml", "--weights", half)
    assert outcome.code == 0, outcome.stderr
    assert f"Loaded 3 of 6 parameter blobs from {half}: ip1, ip2 in part (ip2.0)" in outcome.stderr
    assert ("Layers not in the weights file (initialised by their fillers): conv1 (conv1.0, "
            "conv1.1)") in outcome.stderr
    assert "Blobs not in the weights file (initialised by their fillers): ip2.1" in outcome.stderr
    assert "Skipped layers not in this net: old_classifier" in outcome.stderr
    assert "Loaded weights for" not in outcome.stderr


@pytest.mark.parametrize("key", ["conv1", "conv1.x", "conv1.-1", "conv1.", "ip1.0.weight"])
def test_keys_that_are_not_blob_names_are_errors(project, key):
    tensors = weights_of(project)
    tensors[key] = np.zeros(3, np.float32)
    bad = write(project / "keys.safetensors", tensors)
    for args in (("test", "--model", project / "net.yaml", "--iterations", 1),
                 ("train", project / "solver.yaml")):
        assert_one_error(cli(*args, "--weights", bad), f"key '{key}' is not a parameter blob's name")


def test_a_blob_the_nets_layer_lacks_is_an_error(project):
    tensors = weights_of(project)
    tensors["conv1.2"] = np.zeros(4, np.float32)
    outcome = cli("train", project / "solver.yaml", "--weights", write(project / "x.safetensors", tensors))
    assert_one_error(outcome, "blob conv1.2: layer 'conv1' has 2 parameter blobs in the net")


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64, np.uint8, np.int64])
def test_weights_that_are_not_floats_are_refused_by_name(project, dtype):
    tensors = weights_of(project)
    tensors["conv1.0"] = tensors["conv1.0"].astype(dtype)
    bad = write(project / "ints.safetensors", tensors)
    name = np.dtype(dtype).name
    for args in (("test", "--model", project / "net.yaml", "--iterations", 1),
                 ("train", project / "solver.yaml")):
        assert_one_error(cli(*args, "--weights", bad),
                         f"blob conv1.0 is {name}; weights must be floating point")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(project, value):
    tensors = weights_of(project)
    tensors["ip1.0"][3, 4] = value
    bad = write(project / "nan.safetensors", tensors)
    what = "NaN" if np.isnan(value) else "infinite values"
    for args in (("test", "--model", project / "net.yaml", "--iterations", 1),
                 ("train", project / "solver.yaml")):
        assert_one_error(cli(*args, "--weights", bad), f"blob ip1.0 holds {what}")


def flip_bit(path: Path, blob: str, at: int = 5) -> None:
    """Flip one bit inside ``blob``'s data, as a failing disk would."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[:8], "little")
    begin = json.loads(data[8:8 + size])[blob]["data_offsets"][0]
    data[8 + size + begin + at] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_reported_by_blob(project):
    weights = project / "out/tiny_iter_20.safetensors"
    flip_bit(weights, "ip1.0")
    assert_one_error(cli("test", "--model", project / "net.yaml", "--weights", weights,
                         "--iterations", 1),
                     "file damaged: blob ip1.0 does not match its recorded digest")
    assert_one_error(cli("train", project / "solver.yaml", "--snapshot",
                         project / "out/tiny_iter_20.solverstate"),
                     "file damaged: blob ip1.0 does not match its recorded digest")
    state = project / "out/tiny_iter_10.solverstate"
    flip_bit(state, "history/momentum", at=100)
    assert_one_error(cli("train", project / "solver.yaml", "--snapshot", state),
                     "file damaged: blob history/momentum does not match its recorded digest")


def test_weights_without_digests_still_load(project):
    from safetensors.numpy import save_file

    save_file(weights_of(project), str(project / "other.safetensors"))
    outcome = cli("test", "--model", project / "net.yaml", "--weights",
                  project / "other.safetensors", "--iterations", 1)
    assert outcome.code == 0 and "accuracy = " in outcome.stdout, outcome.stderr


def test_resume_refuses_another_iterations_weights(project):
    out = project / "out"
    shutil.copy(out / "tiny_iter_10.safetensors", out / "tiny_iter_20.safetensors")
    assert_one_error(cli("train", project / "solver.yaml", "--snapshot", out / "tiny_iter_20.solverstate"),
                     "tiny_iter_20.safetensors holds the weights of iteration 10, the state is of "
                     "iteration 20")


def test_resume_refuses_another_runs_weights(project, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    solver = write_project(other, max_iter=20, snapshot=20)
    solver.write_text(solver.read_text().replace("random_seed: 7", "random_seed: 8"))
    assert cli("train", solver).code == 0
    shutil.copy(other / "out/tiny_iter_20.safetensors", project / "out/tiny_iter_20.safetensors")
    assert_one_error(cli("train", project / "solver.yaml", "--snapshot",
                         project / "out/tiny_iter_20.solverstate"),
                     "is not the weights file this state was saved with")


def rewrite_meta(state: Path, **fields) -> Path:
    tensors, meta = snap.load_state(state)
    meta.update(fields)
    snap.save_state(state, tensors, {k: v for k, v in meta.items() if v is not ...})
    return state


@pytest.mark.parametrize("field, value, message", [
    ("weights", "../../etc/passwd", "weights: \"../../etc/passwd\" is not a file name in the state's folder"),
    ("weights", "/etc/passwd", "weights: \"/etc/passwd\" is not a file name"),
    ("weights", "..", "weights: \"..\" is not a file name"),
    ("iter", -3, "iter: -3 is not a non-negative integer"),
    ("iter", 2.5, "iter: 2.5 is not a non-negative integer"),
    ("iter", None, "iter: null is not a non-negative integer"),
    ("iter", "20", "iter: \"20\" is not a non-negative integer"),
    ("iter", True, "iter: true is not a non-negative integer"),
    ("losses", ["a"], "losses: [\"a\"] is not a list of finite numbers"),
    ("losses", 3, "losses: 3 is not a list of finite numbers"),
    ("rng", {"a": 1}, "rng: {\"a\": 1} is not a random generator's state"),
    ("rng", "[1]", "rng: \"[1]\" is not a random generator's state"),
    ("test_rng", None, "test_rng: null is not a random generator's state"),
    ("layout", [["ip1.0", [-1]]], "layout: [[\"ip1.0\", [-1]]] is not a list of [blob, shape]"),
    ("type", 5, "type: 5 is not a solver type"),
    ("weights_sha256", "xyz", "weights_sha256: \"xyz\" is not a SHA-256 digest"),
])
def test_damaged_state_metadata_is_one_line(project, field, value, message):
    state = rewrite_meta(project / "out/tiny_iter_20.solverstate", **{field: value})
    assert_one_error(cli("train", project / "solver.yaml", "--snapshot", state),
                     "damaged solver state (" + message)


@pytest.mark.parametrize("fmt, suffix", [("BINARYPROTO", ".solverstate"), ("HDF5", ".solverstate.h5")])
def test_caffe_format_states_bind_their_weights(tmp_path, fmt, suffix):
    solver = write_project(tmp_path, max_iter=20, snapshot=10)
    solver.write_text(solver.read_text() + f"snapshot_format: {fmt}\n")
    assert cli("train", solver).code == 0
    out = tmp_path / "out"
    model = ".caffemodel" if fmt == "BINARYPROTO" else ".caffemodel.h5"
    outcome = cli("train", solver, "--snapshot", out / f"tiny_iter_10{suffix}")
    assert outcome.code == 0 and "Resumed from" in outcome.stderr, outcome.stderr
    shutil.copy(out / f"tiny_iter_10{model}", out / f"tiny_iter_20{model}")
    assert_one_error(cli("train", solver, "--snapshot", out / f"tiny_iter_20{suffix}"),
                     "is not the weights file this state was saved with")
    for args in (("train", solver), ("test", "--model", tmp_path / "net.yaml", "--iterations", 1)):
        assert_one_error(cli(*args, "--weights", out / f"tiny_iter_10{suffix}"),
                         f"tiny_iter_10{suffix} is a solver state, not weights; resume with "
                         f"--snapshot {out / f'tiny_iter_10{suffix}'}")


def test_a_caffe_state_with_a_negative_iteration_is_damaged(tmp_path):
    from trainnet.formats import caffe_pb

    solver = write_project(tmp_path, max_iter=2)
    state = tmp_path / "neg.solverstate"
    state.write_bytes(caffe_pb.SolverState(iter=-5, learned_net="").SerializeToString())
    assert_one_error(cli("train", solver, "--snapshot", state),
                     "damaged solver state (iter: -5 is not a non-negative integer)")


def test_a_solver_state_as_weights_says_how_to_resume(project):
    state = project / "out/tiny_iter_10.solverstate"
    for args in (("train", project / "solver.yaml"),
                 ("test", "--model", project / "net.yaml", "--iterations", 1)):
        assert_one_error(cli(*args, "--weights", state),
                         f"{state} is a solver state, not weights; resume with --snapshot {state}")
    assert_one_error(cli("train", project / "solver.yaml", "--snapshot",
                         project / "out/tiny_iter_10.safetensors"), "not a trainnet solver state")


# --- classify --------------------------------------------------------------------------------

DEPLOY = """
name: Tiny
preprocess: {channel_order: GRAY, raw_scale: 1}
layer:
  - {name: data, type: Input, top: data, shape: {dim: [1, 1, 8, 8]}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, num_output: 4}
  - {name: prob, type: Softmax, bottom: ip, top: prob}
"""


@pytest.fixture
def deploy(tmp_path):
    (tmp_path / "deploy.yaml").write_text(DEPLOY)
    rng = np.random.default_rng(0)
    write(tmp_path / "w.safetensors", {"ip.0": rng.normal(size=(4, 64)).astype(np.float32),
                                       "ip.1": np.zeros(4, np.float32)})
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "a.png")
    return tmp_path


def classify(folder: Path, *args):
    return cli("classify", "--model", folder / "deploy.yaml", "--device", "cpu", *args)


def test_classify_works_on_the_tiny_net(deploy):
    outcome = classify(deploy, "--weights", deploy / "w.safetensors", deploy / "a.png")
    assert outcome.code == 0 and len(outcome.stdout.splitlines()) == 5, outcome.stderr


def test_classify_refuses_a_decompression_bomb(deploy, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 16x16 is a "bomb" of 2.5x the limit
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(deploy / "bomb.png")
    Image.fromarray(np.zeros((8, 14), np.uint8)).save(deploy / "warn.png")   # over 1x: a warning
    for name in ("bomb.png", "warn.png"):
        assert_one_error(classify(deploy, "--weights", deploy / "w.safetensors", deploy / name),
                         str(deploy / name), "decompression bomb")


def test_classify_refuses_a_labels_file_that_is_not_utf8(deploy):
    (deploy / "labels.txt").write_bytes(b"cat\ndog\n\xff\xfebird\nfish\n")
    assert_one_error(classify(deploy, "--weights", deploy / "w.safetensors", "--labels",
                              deploy / "labels.txt", deploy / "a.png"),
                     str(deploy / "labels.txt"), "not UTF-8")
    assert_one_error(classify(deploy, "--weights", deploy / "w.safetensors", "--labels",
                              deploy / "none.txt", deploy / "a.png"), "none.txt", "not found")


def test_classify_needs_every_blob(deploy):
    write(deploy / "half.safetensors", {"ip.0": np.zeros((4, 64), np.float32)})
    assert_one_error(classify(deploy, "--weights", deploy / "half.safetensors", deploy / "a.png"),
                     "lacks 1 of the net's 2 parameter blobs: ip.1")


def test_classify_refuses_non_finite_outputs(deploy):
    write(deploy / "big.safetensors", {"ip.0": np.full((4, 64), 3e38, np.float32),
                                       "ip.1": np.zeros(4, np.float32)})
    assert_one_error(classify(deploy, "--weights", deploy / "big.safetensors", deploy / "a.png"),
                     "output 'prob' is not finite", "layer 'ip' (InnerProduct) forward: its top "
                     "'ip' is not finite")
    write(deploy / "nan.safetensors", {"ip.0": np.full((4, 64), np.nan, np.float32),
                                       "ip.1": np.zeros(4, np.float32)})
    assert_one_error(classify(deploy, "--weights", deploy / "nan.safetensors", deploy / "a.png"),
                     "blob ip.0 holds NaN")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_pipes_are_refused_not_read(deploy):
    os.mkfifo(deploy / "pipe")   # reading it would block for ever
    assert_one_error(classify(deploy, "--weights", deploy / "w.safetensors", deploy / "pipe"),
                     "not a regular file")
    assert_one_error(classify(deploy, "--weights", deploy / "w.safetensors", "--labels",
                              deploy / "pipe", deploy / "a.png"), "not a regular file")
    assert_one_error(classify(deploy, "--weights", deploy / "pipe", deploy / "a.png"))
