"""Solver nets and states as Caffe's SolverParameter gives them: train_net/test_net files,
inline net_param messages, train_state/test_state, several test nets; --stage/--level."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from synthetic import write_dataset
from trainnet.cli import main
from trainnet.errors import ConfigError
from trainnet.netcfg import load_solver, load_solver_text
from trainnet.netcfg.common import NetState
from trainnet.netcfg.solver_nets import merge_state, solver_test_nets, solver_train_net
from trainnet.solver.solver import Solver

# An autoencoder in the form of Caffe's mnist_autoencoder: one TRAIN data layer and two TEST
# data layers told apart by stage, so the solver tests on the training and on the test images.
AUTOENCODER = """\
name: "SmallAutoencoder"
layer {
  name: "pixels" type: "Data" top: "data"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "train-images-idx3-ubyte.gz" batch_size: 16 }
}
layer {
  name: "pixels" type: "Data" top: "data"
  include { phase: TEST stage: "on-training-images" }
  transform_param { scale: 0.00390625 }
  data_param { source: "train-images-idx3-ubyte.gz" batch_size: 24 }
}
layer {
  name: "pixels" type: "Data" top: "data"
  include { phase: TEST stage: "on-test-images" }
  transform_param { scale: 0.00390625 }
  data_param { source: "test-images-idx3-ubyte.gz" batch_size: 32 }
}
layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }
layer {
  name: "enc" type: "InnerProduct" bottom: "data" top: "enc"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 decay_mult: 0 }
  inner_product_param { num_output: 12 weight_filler { type: "gaussian" std: 0.3 } }
}
layer { name: "enc_act" type: "Sigmoid" bottom: "enc" top: "enc_act" }
layer {
  name: "dec" type: "InnerProduct" bottom: "enc_act" top: "dec"
  inner_product_param { num_output: 64 weight_filler { type: "gaussian" std: 0.3 } }
}
layer {
  name: "xent" type: "SigmoidCrossEntropyLoss" bottom: "dec" bottom: "flat"
  top: "cross_entropy"
}
layer { name: "dec_act" type: "Sigmoid" bottom: "dec" top: "dec_act" }
layer {
  name: "l2" type: "EuclideanLoss" bottom: "dec_act" bottom: "flat" top: "l2_error"
  loss_weight: 0
}
"""

AUTOENCODER_SOLVER = """\
net: "autoencoder.prototxt"
test_state: { stage: "on-training-images" }
test_iter: 3
test_state: { stage: "on-test-images" }
test_iter: 2
test_interval: 10
test_compute_loss: true
base_lr: 0.05
lr_policy: "step"
gamma: 0.5
stepsize: 15
momentum: 0.9
weight_decay: 0.0005
display: 5
max_iter: 20
snapshot: 10
snapshot_prefix: "out/ae"
random_seed: 5
solver_mode: CPU
"""


def autoencoder(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "autoencoder.prototxt").write_text(AUTOENCODER)
    (tmp_path / "solver.prototxt").write_text(AUTOENCODER_SOLVER)
    return tmp_path / "solver.prototxt"


def test_autoencoder_tests_on_training_and_test_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snapshot_prefix is relative to the working directory
    solver = autoencoder(tmp_path)
    result = CliRunner().invoke(main, ["train", str(solver), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Creating test net (#0) specified by net file: autoencoder.prototxt" in out
    assert "Creating test net (#1) specified by net file: autoencoder.prototxt" in out
    for it in (0, 10, 20):
        for i in (0, 1):
            assert re.search(rf"Iteration {it}, Testing net \(#{i}\): cross_entropy = [\d.]+, "
                             r"l2_error = [\d.]+", out), out
    # each test net reads its own source with its own batch, by stage
    s = Solver(load_solver(solver))
    sources = [[(st.layer.p.source, st.layer.p.batch_size) for st in net.plan.steps
                if st.type == "Data"] for net in s.test_nets]
    assert sources == [[("train-images-idx3-ubyte.gz", 24)], [("test-images-idx3-ubyte.gz", 32)]]
    assert [net.plan.net_name for net in s.test_nets] == ["SmallAutoencoder"] * 2
    first, second = s.test_all(), s.test_results[1]
    assert first["cross_entropy"] != second["cross_entropy"]
    # a prototxt solver snapshots as Caffe does (BINARYPROTO), keeping both test readers
    assert (tmp_path / "out/ae_iter_20.caffemodel").is_file()
    assert (tmp_path / "out/ae_iter_20.solverstate").is_file()


def test_autoencoder_resume_keeps_each_test_reader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    solver = autoencoder(tmp_path)
    full = Solver(load_solver(solver))
    full.solve()
    half = Solver(load_solver(solver))
    half.cfg = half.cfg.model_copy(update={"max_iter": 10})
    half.solve()
    resumed = Solver(load_solver(solver))
    resumed.restore(tmp_path / "out/ae_iter_10.solverstate")
    resumed.solve()
    np.testing.assert_array_equal(resumed.net.params.data, full.net.params.data)
    for a, b in zip(resumed.test_results, full.test_results):
        assert a["cross_entropy"] == b["cross_entropy"]


NET_YAML = """
name: {name}
state: {{stage: [own]}}
layer:
  - {{name: in, type: Input, top: x, shape: {{dim: [2, 3]}}}}
  - {{name: ip, type: InnerProduct, bottom: x, top: y, num_output: 2}}
  - {{name: only_deep, type: InnerProduct, bottom: x, top: z, num_output: 1,
      include: {{min_level: 2}}}}
"""

INLINE = """
  name: inline
  layer:
    - {name: in, type: Input, top: x, shape: {dim: [2, 3]}}
    - {name: ip, type: InnerProduct, bottom: x, top: y, num_output: 2}
"""


def test_test_nets_in_caffes_order_with_merged_states(tmp_path):
    (tmp_path / "a.yaml").write_text(NET_YAML.format(name="A"))
    (tmp_path / "b.yaml").write_text(NET_YAML.format(name="B"))
    (tmp_path / "s.yaml").write_text(
        "net: a.yaml\ntest_net: b.yaml\ntest_net_param:" + INLINE +
        "test_iter: [1, 2, 3, 4]\ntest_interval: 5\n"
        "train_state: {level: 3, stage: extra}\n"
        "test_state: [{}, {stage: [s1]}, {level: 2}, {stage: [s2, s3], level: 0}]\n")
    cfg = load_solver(tmp_path / "s.yaml")
    train = solver_train_net(cfg)
    assert (train.source, train.cfg.name) == ("net file: a.yaml", "A")
    assert train.state == NetState(phase="TRAIN", level=3, stage=["own", "extra"])
    tests = solver_test_nets(cfg)
    assert [(t.source, t.cfg.name) for t in tests] == [
        ("test_net_param", "inline"), ("test_net file: b.yaml", "B"),
        ("net file: a.yaml", "A"), ("net file: a.yaml", "A")]
    assert [(t.state.phase, t.state.level, t.state.stage) for t in tests] == [
        ("TEST", 0, []), ("TEST", 0, ["own", "s1"]), ("TEST", 2, ["own"]),
        ("TEST", 0, ["own", "s2", "s3"])]
    s = Solver(cfg)
    deep = [["only_deep" in [st.name for st in n.plan.steps]] for n in (s.net, *s.test_nets)]
    assert deep == [[True], [False], [False], [True], [False]]   # level >= 2: train, test #2


def test_merge_state_sets_level_only_when_given():
    own = NetState(level=4, stage=["a"])
    assert merge_state("TEST", own, NetState(stage=["b"])) == NetState(level=4, stage=["a", "b"])
    assert merge_state("TRAIN", own, NetState(level=0)).level == 0
    assert merge_state("TRAIN", own, NetState(phase="TEST")).phase == "TRAIN"


@pytest.mark.parametrize("text, message", [
    ('net: "a"\ntrain_net: "b"\n', r"s.prototxt:2: a solver names its train net by exactly one "
     r"of net, net_param, train_net, train_net_param; this one gives 2: net, train_net"),
    ('base_lr: 0.1\n', r"s.prototxt:1: .*this one gives none"),
    ('train_net: "a"\ntest_net: "b"\ntest_net: "c"\ntest_iter: 5\n',
     r"s.prototxt:4: test_iter: lists 1 value, but the solver names 2 test nets"),
    ('train_net: "a"\ntest_iter: 5\ntest_interval: 5\n',
     r"s.prototxt:2: test_iter: lists 1 value, but the solver names 0 test nets .*; more are "
     r"for copies of net or net_param, which it lacks"),
    ('net: "a"\ntest_iter: 5\ntest_iter: 6\ntest_interval: 5\ntest_state { stage: "x" }\n',
     r"s.prototxt:5: test_state: 1 state for 2 test nets"),
    ('base_lr: 0.1\nnet_param {\n  layer { name: "ip"\n type: "InnerProdcut" } }\n',
     r"s.prototxt:4: layer 'ip': (type: )?unknown layer type 'InnerProdcut'"),
])
def test_solver_net_mistakes_name_the_line(text, message):
    with pytest.raises(ConfigError, match=message):
        load_solver_text(text, "s.prototxt")


V1_NET = """
  layers { name: "in" type: DUMMY_DATA top: "x" top: "t"
           dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                              data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
  layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" blobs_lr: 1 blobs_lr: 2
           inner_product_param { num_output: 2 } }
  layers { name: "loss" type: EUCLIDEAN_LOSS bottom: "y" bottom: "t" top: "loss" }
"""


def test_inline_prototxt_nets_train(tmp_path):
    """A Caffe solver with train_net_param and test_net_param messages, read as net files are
    (here V1 layers, upgraded)."""
    text = (f"train_net_param {{{V1_NET}}}\ntest_net_param {{{V1_NET}}}\n"
            "test_iter: 2\ntest_interval: 3\nmax_iter: 3\nbase_lr: 0.1\nsnapshot_after_train: false\n")
    cfg = load_solver_text(text, str(tmp_path / "s.prototxt"))
    lines = []
    s = Solver(cfg, log=lines.append)
    s.solve()
    assert "Creating training net from train_net_param" in lines
    assert "Creating test net (#0) specified by test_net_param" in lines
    assert [slot.lr_mult for slot in s.net.params.slots] == [1.0, 2.0]
    assert "loss" in s.last_test
    bad = f"train_net_param {{{V1_NET}  layer {{ name: 'r' type: 'ReLU' }}\n}}\n"
    with pytest.raises(ConfigError, match=r"s.prototxt:\d+: mixes V1 'layers' and current 'layer'"):
        load_solver_text(bad, "s.prototxt")


def test_cli_stage_and_level(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "autoencoder.prototxt").write_text(AUTOENCODER)
    net = str(tmp_path / "autoencoder.prototxt")

    def data_line(*args):
        result = CliRunner().invoke(main, ["plan", net, "--phase", "TEST", *args])
        return result.exit_code, result.output

    code, out = data_line("--stage", "on-test-images")
    assert code == 0, out
    assert re.search(r"pixels\s+Data\s+data 32x1x8x8", out), out
    code, out = data_line("--stage", "on-training-images")
    assert code == 0 and re.search(r"pixels\s+Data\s+data 24x1x8x8", out), out
    code, out = data_line()
    assert code == 1 and "bottom 'data': no layer before it produces it" in out  # no stage
    (tmp_path / "deep.yaml").write_text(NET_YAML.format(name="D"))
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "deep.yaml"), "--level", "2"])
    assert result.exit_code == 0 and "only_deep" in result.output
    result = CliRunner().invoke(main, ["time", str(tmp_path / "deep.yaml"), "--iterations", "1"])
    assert result.exit_code == 0 and "only_deep" not in result.output
    result = CliRunner().invoke(main, ["time", str(tmp_path / "deep.yaml"), "--iterations", "1",
                                       "--level", "2"])
    assert result.exit_code == 0 and "only_deep" in result.output
