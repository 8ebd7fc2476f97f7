"""The LeNet Caffe trained (../shared/data/caffe/lenet): converted, tested, exported, fine-tuned."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from trainnet.cli import main
from trainnet.formats.tensorfile import peek_metadata
from trainnet.solver.snapshot import read_tensors
from trainnet.formats.caffemodel import read_caffemodel

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "configs" / "lenet" / "lenet_train_test.yaml"


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def converted(tmp_path, caffe_lenet) -> Path:
    out = tmp_path / "lenet.safetensors"
    text = cli("convert", caffe_lenet, out, "--model", NET, "--channel-order", "GRAY",
               "--raw-scale", "255", "--input-scale", "0.00390625")
    assert "4 layers, 431,080 parameters" in text and "no preprocessing" not in text
    return out


def accuracy(output: str) -> float:
    return float(next(l for l in output.splitlines() if l.startswith("accuracy = ")).split("= ")[1])


def test_converted_lenet_reaches_caffe_accuracy_on_the_cpu(tmp_path, caffe_lenet):
    """All 10,000 MNIST test images (100 batches of 100) through `trainnet test`."""
    weights = converted(tmp_path, caffe_lenet)
    meta = peek_metadata(weights)
    assert json.loads(meta["preprocess"])["channel_order"] == "GRAY"
    assert meta["format"] == "trainnet-weights" and meta["source"] == caffe_lenet.name
    out = cli("test", "--model", NET, "--weights", weights, "--iterations", 100, "--device", "cpu")
    assert accuracy(out) >= 0.991


@pytest.mark.gpu
def test_converted_lenet_reaches_caffe_accuracy_on_a_real_gpu(tmp_path, caffe_lenet):
    from trainnet.runtime.device import gpu_count

    if not gpu_count():
        pytest.skip("no CUDA GPU here (CuPy missing or no device)")
    weights = converted(tmp_path, caffe_lenet)
    out = cli("test", "--model", NET, "--weights", weights, "--iterations", 100, "--device", "cuda")
    assert accuracy(out) >= 0.991


def test_converted_lenet_on_the_emulated_gpu_matches_the_cpu(tmp_path, caffe_lenet, gpu_device):
    """The GPU path (emulated here; a real GPU where present) gives the CPU's outputs."""
    from trainnet.netcfg import load_net
    from trainnet.plan import compile_net
    from trainnet.runtime.device import CPU
    from trainnet.runtime.net import Net
    from trainnet.solver.weights import EXACT, load_weights

    weights = converted(tmp_path, caffe_lenet)
    cfg = load_net(NET)
    outs = []
    for device in (CPU, gpu_device):
        net = Net(compile_net(cfg, "TEST", backward=False, gpu=device.is_gpu), device,
                  rng=np.random.default_rng(0))
        load_weights(weights, net.params, EXACT)
        net.forward()
        outs.append(net.outputs())
    assert outs[1]["accuracy"] == outs[0]["accuracy"] >= 0.98
    assert abs(outs[1]["loss"] - outs[0]["loss"]) <= 1e-4 * outs[0]["loss"]


def test_export_to_caffemodel_round_trips(tmp_path, caffe_lenet):
    weights = converted(tmp_path, caffe_lenet)
    deploy = caffe_lenet.parent / "lenet.prototxt"
    cli("convert", weights, tmp_path / "out.caffemodel", "--model", deploy)
    original, again = read_caffemodel(caffe_lenet), read_caffemodel(tmp_path / "out.caffemodel")
    blobs = {l.name: l.blobs for l in original.layers if l.blobs}
    exported = {l.name: l for l in again.layers}
    assert set(blobs) <= set(exported)
    for name, arrays in blobs.items():
        assert exported[name].type == next(l.type for l in original.layers if l.name == name)
        for a, b in zip(arrays, exported[name].blobs):
            np.testing.assert_array_equal(a.reshape(b.shape), b)
    assert exported["conv1"].bottom == ("data",) and exported["conv1"].top == ("conv1",)
    stored = read_tensors(weights, "weights")
    np.testing.assert_array_equal(stored["ip1.0"], exported["ip1"].blobs[0])


def test_fine_tune_with_a_renamed_last_layer(tmp_path, caffe_lenet, monkeypatch):
    """The matching layers load from the caffemodel, the renamed one is reported and starts
    from its filler, and training goes on from the pretrained features."""
    monkeypatch.chdir(tmp_path)
    net = yaml.safe_load(NET.read_text())
    for layer in net["layer"]:
        if layer["name"] == "ip2":
            layer["name"] = "ip2_digits"
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
    (tmp_path / "solver.yaml").write_text(
        "net: net.yaml\ntest_iter: 10\ntest_interval: 30\nbase_lr: 0.01\nmomentum: 0.9\n"
        "lr_policy: fixed\ndisplay: 10\nmax_iter: 30\nrandom_seed: 3\nsnapshot_after_train: false\n")
    out = cli("train", "solver.yaml", "--weights", caffe_lenet, "--device", "cpu")
    assert f"Loaded weights for 3 layers from {caffe_lenet}: conv1, conv2, ip1" in out
    assert "Skipped layers not in this net: ip2" in out
    assert "Layers not in the weights file (initialised by their fillers): ip2_digits" in out
    final = [l for l in out.splitlines() if "Testing net" in l][-1]
    assert re.match(r"I\d{4} [\d:.]+ Iteration 30, Testing net \(#0\): ", final), final
    assert float(final.split("accuracy = ")[1].split(",")[0]) >= 0.93, out  # 0.04 before training
