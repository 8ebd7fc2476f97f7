"""Caffe's training files as Caffe users have them, unmodified: prototxts in the form of Caffe's
examples (LMDB Data layers, paths relative to Caffe's root, a mean_file, a solver naming its net
from the root; written here, in the current and the V1 form), over databases made by
`trainnet data ... --lmdb`, planned, converted and trained from that working directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainnet.cli import main

LENET = """name: "LeNet"
layer {
  name: "mnist"  type: "Data"  top: "data"  top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "examples/mnist/mnist_train_lmdb"  batch_size: 64  backend: LMDB }
}
layer {
  name: "mnist"  type: "Data"  top: "data"  top: "label"
  include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "examples/mnist/mnist_test_lmdb"  batch_size: 100  backend: LMDB }
}
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

# The same net in the legacy V1 form, its data_param carrying the (deprecated) scale and no
# backend: Caffe's default would be LEVELDB, the folder says LMDB.
LENET_V1 = """name: "LeNet"
layers { name: "mnist" type: DATA top: "data" top: "label"
  data_param { source: "examples/mnist/mnist_train_lmdb" batch_size: 64 scale: 0.00390625 }
  include: { phase: TRAIN } }
layers { name: "mnist" type: DATA top: "data" top: "label"
  data_param { source: "examples/mnist/mnist_test_lmdb" batch_size: 100 scale: 0.00390625 }
  include: { phase: TEST } }
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool1" top: "ip1" blobs_lr: 1 blobs_lr: 2
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layers { name: "accuracy" type: ACCURACY bottom: "ip1" bottom: "label" top: "accuracy"
  include: { phase: TEST } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "ip1" bottom: "label" top: "loss" }
"""

SOLVER = """# as examples/mnist/lenet_solver.prototxt, shortened
net: "examples/mnist/{net}"
test_iter: 5
test_interval: 50
test_initialization: false
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 10
max_iter: 50
snapshot: 50
snapshot_prefix: "examples/mnist/lenet"
solver_mode: CPU
"""


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def caffe_root(tmp_path, monkeypatch, mnist_dir):
    """A Caffe-style root: examples/mnist holding the LMDBs `trainnet data mnist --lmdb` makes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    code, out = run("data", "mnist", "--lmdb", "examples/mnist")
    assert code == 0, out
    monkeypatch.delenv("TRAINNET_DATA")  # from here on, paths as Caffe resolves them
    return tmp_path


def last_test(prefix: Path) -> dict:
    records = [json.loads(l) for l in Path(f"{prefix}_log.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == "test"][-1]["outputs"]


@pytest.mark.parametrize("net", [LENET, LENET_V1])
def test_lenet_as_caffe_has_it(caffe_root, net):
    examples = caffe_root / "examples/mnist"
    (examples / "lenet_train_test.prototxt").write_text(net)
    (examples / "lenet_solver.prototxt").write_text(SOLVER.format(net="lenet_train_test.prototxt"))
    code, out = run("plan", "examples/mnist/lenet_train_test.prototxt", "--phase", "TEST")
    assert code == 0, out
    assert "(100, 1, 28, 28)" in out or "100x1x28x28" in out
    code, out = run("train", "examples/mnist/lenet_solver.prototxt", "--device", "cpu")
    assert code == 0, out
    accuracy = last_test(examples / "lenet")["accuracy"]
    assert accuracy > 0.8, out  # 50 iterations of LeNet
    # a prototxt solver snapshots in Caffe's own format, where Caffe would
    assert (examples / "lenet_iter_50.caffemodel").is_file()
    assert (examples / "lenet_iter_50.solverstate").is_file()
    code, out = run("test", "--model", "examples/mnist/lenet_train_test.prototxt", "--weights",
                    "examples/mnist/lenet_iter_50.caffemodel", "--iterations", 5, "--device", "cpu")
    assert code == 0 and f"accuracy = {accuracy:.6g}" in out, out  # the same 5 batches, weights
    code, out = run("convert", "examples/mnist/lenet_train_test.prototxt", "lenet.yaml")
    assert code == 0, out


def test_a_missing_database_names_the_places_tried(caffe_root):
    (caffe_root / "net.prototxt").write_text(LENET_V1.replace("mnist_train_lmdb", "mnist_train_leveldb"))
    code, out = run("plan", "net.prototxt")
    assert code == 1
    assert str(caffe_root / "examples/mnist/mnist_train_leveldb") in out
    assert "Caffe would read a LevelDB database" in out and "trainnet data mnist" in out


CIFAR_QUICK = """name: "CIFAR10_quick"
layer { name: "cifar" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mean_file: "examples/cifar10/mean.binaryproto" }
  data_param { source: "examples/cifar10/cifar10_train_lmdb" batch_size: 50 backend: LMDB } }
layer { name: "cifar" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { mean_file: "examples/cifar10/mean.binaryproto" }
  data_param { source: "examples/cifar10/cifar10_test_lmdb" batch_size: 100 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 32 pad: 2 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.0001 } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "pool1" top: "pool1" }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 32 pad: 2 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 64 pad: 2 kernel_size: 5 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool3" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 64 weight_filler { type: "gaussian" std: 0.1 }
    bias_filler { type: "constant" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.1 }
    bias_filler { type: "constant" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

CIFAR_SOLVER = """net: "examples/cifar10/cifar10_quick_train_test.prototxt"
test_iter: 3
test_interval: 60
base_lr: 0.001
momentum: 0.9
weight_decay: 0.004
lr_policy: "fixed"
display: 10
max_iter: 60
snapshot: 60
snapshot_format: HDF5
snapshot_prefix: "examples/cifar10/cifar10_quick"
solver_mode: CPU
"""


def test_cifar10_with_a_mean_file_as_caffe_has_it(tmp_path, monkeypatch, cifar_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINNET_DATA", str(cifar_dir.parent))
    code, out = run("data", "cifar10", "--lmdb", "examples/cifar10")
    assert code == 0, out
    monkeypatch.delenv("TRAINNET_DATA")
    examples = tmp_path / "examples/cifar10"
    assert (examples / "mean.binaryproto").read_bytes() == (cifar_dir / "mean.binaryproto").read_bytes()
    (examples / "cifar10_quick_train_test.prototxt").write_text(CIFAR_QUICK)
    (examples / "cifar10_quick_solver.prototxt").write_text(CIFAR_SOLVER)
    code, out = run("train", "examples/cifar10/cifar10_quick_solver.prototxt", "--device", "cpu")
    assert code == 0, out
    assert last_test(examples / "cifar10_quick")["accuracy"] > 0.2, out
    assert (examples / "cifar10_quick_iter_60.caffemodel.h5").is_file()
    assert (examples / "cifar10_quick_iter_60.solverstate.h5").is_file()


def test_converting_for_caffe_says_what_caffe_would_not_read(tmp_path):
    configs = Path(__file__).resolve().parents[1] / "configs"
    code, out = run("convert", configs / "cifar10/cifar10_quick_train_test.yaml", tmp_path / "q.prototxt")
    assert code == 0 and "layer 'cifar' (Data): backend CIFAR is trainnet's own" in out, out
    code, out = run("convert", configs / "lenet/lenet_train_test.yaml", tmp_path / "l.prototxt")
    assert "layer 'mnist' (Data): shuffle is trainnet's own: Caffe's parser refuses them" in out
    assert "no backend is written" in out
    code, out = run("convert", configs / "cifar10/cifar10_quick_solver.yaml", tmp_path / "s.prototxt")
    assert "a prototxt solver snapshots in Caffe's BINARYPROTO" in out
