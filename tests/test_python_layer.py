"""Python layers (Caffe's ``Python`` type with pycaffe's contract): the gradient checker on them,
training with one as the loss, snapshots of their blobs, errors, phase, `trainnet plan`, and the
GPU path (host arrays) against the CPU.  The layers are in tests/pylayers/tn_pylayers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "pylayers"))  # as a user's PYTHONPATH would

from gpu_check import check_parity
from hostile import cli
from layer_check import build
from trainnet.errors import ConfigError, TrainnetError
from trainnet.layers.python import PythonLayerError
from trainnet.netcfg import load_net_text, load_solver
from trainnet.plan.compile import compile_net
from trainnet.runtime.gradcheck import check_gradient
from trainnet.runtime.net import Net
from trainnet.solver.solver import Solver
from tn_pylayers import EuclideanLoss, Scale  # noqa: E402

RNG = np.random.default_rng(0)


def py(layer: str, bottom_shapes, param_str: str = "", name: str = "py"):
    return build("Python", {"module": "tn_pylayers", "layer": layer, "param_str": param_str},
                 bottom_shapes, name=name)


# --- the gradient checker -----------------------------------------------------------------------

def test_check_gradient_on_a_user_instance_with_a_learnable_blob():
    check_gradient(Scale(param_str="2.5"), [RNG.normal(size=(2, 3, 4))])


def test_check_gradient_on_a_built_layer_and_its_initial_values():
    layer = py("Scale", [(2, 3)], param_str="3")
    (blob,) = layer.param_blobs()
    assert blob.shape == (1,) and np.frombuffer(blob.filler.values, np.float32).tolist() == [3.0]
    assert layer.top_shapes == [(2, 3)]
    check_gradient(layer, [RNG.normal(size=(2, 3))])


def test_check_gradient_on_a_python_loss():
    check_gradient(EuclideanLoss(), [RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))])


def test_check_gradient_finds_a_wrong_backward():
    class Wrong(Scale):
        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = top[0].diff

    with pytest.raises(AssertionError, match="gradient of bottom 0"):
        check_gradient(Wrong(param_str="2"), [RNG.normal(size=(3,))])


# --- training, snapshots --------------------------------------------------------------------------

NET = """name: "pynet"
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 8 dim: 4 } shape { dim: 8 dim: 3 }
    data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 0.5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "scale" type: "Python" bottom: "ip" top: "scaled"
  python_param { module: "tn_pylayers" layer: "Scale" param_str: "2" } }
layer { name: "loss" type: "Python" bottom: "scaled" bottom: "target" top: "loss" loss_weight: 1
  python_param { module: "tn_pylayers" layer: "EuclideanLoss" } }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.02
lr_policy: "fixed"
max_iter: 40
snapshot: 40
snapshot_prefix: "{prefix}"
solver_mode: CPU
random_seed: 1
"""


def write_net(tmp_path: Path) -> Path:
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER.format(prefix=tmp_path / "out/py"))
    return tmp_path / "solver.prototxt"


def test_a_python_loss_trains_and_its_blob_is_snapshotted(tmp_path):
    s = Solver(load_solver(write_net(tmp_path)))
    assert s.net.params.named()["scale.0"].tolist() == [2.0]  # setup's value, not a filler's
    first = s.net.forward()
    s.solve()
    last = s.net.forward()
    assert last < 0.2 * first
    learned = s.net.params.named()["scale.0"].copy()
    assert learned[0] != 2.0
    resumed = Solver(load_solver(tmp_path / "solver.prototxt"))
    resumed.restore(tmp_path / "out/py_iter_40.solverstate")
    np.testing.assert_array_equal(resumed.net.params.named()["scale.0"], learned)
    assert resumed.net.forward() == pytest.approx(last, rel=1e-6)


def test_the_same_layer_in_yaml():
    cfg = load_net_text("layer:\n- {name: in, type: Input, top: x, shape: {dim: [2, 3]}}\n"
                        "- {name: s, type: Python, bottom: x, top: y, module: tn_pylayers, "
                        "layer: Scale, param_str: '4'}\n", "n.yaml")
    net = Net(compile_net(cfg, "TEST"))
    net.set_input("x", np.ones((2, 3), np.float32))
    net.forward()
    np.testing.assert_array_equal(net.outputs()["y"], np.full((2, 3), 4.0))


# --- phase ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("phase, value", [("TRAIN", 0), ("TEST", 1)])
def test_phase_is_pycaffes_number(phase, value):
    cfg = load_net_text("layer:\n- {name: in, type: Input, top: x, shape: {dim: [2, 3, 4]}}\n"
                        "- {name: p, type: Python, bottom: x, top: phase, module: tn_pylayers, "
                        "layer: Phase}\n", "n.yaml")
    plan = compile_net(cfg, phase, backward=False)
    assert plan.steps[-1].layer.user.seen == (2, 3, 4, 1)  # Caffe's num, channels, height, width
    net = Net(plan)
    net.forward()
    assert net.outputs()["phase"] == value


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, layer, message", [
    ("tn_no_such_module", "X", "module 'tn_no_such_module' not found on sys.path"),
    ("tn_pylayers", "Missing", "module 'tn_pylayers' has no class 'Missing'"),
    ("tn_pylayers", "NotALayer", "'tn_pylayers.NotALayer' is not a subclass of trainnet.caffe.Layer"),
    ("tn_pylayers", "NoForward", "'tn_pylayers.NoForward' does not define forward"),
])
def test_bad_classes_are_config_errors_naming_layer_and_module(module, layer, message):
    text = (f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 2 }} }} }}\n'
            f'layer {{ name: "mine" type: "Python" bottom: "x" top: "y"\n'
            f'  python_param {{ module: "{module}" layer: "{layer}" }} }}\n')
    with pytest.raises(ConfigError) as info:
        compile_net(load_net_text(text, "n.prototxt"))
    assert info.value.layer == "mine" and info.value.line == 2
    assert message in str(info.value)


def test_an_exception_in_forward_names_the_layer_and_carries_its_traceback():
    layer = py("Fails", [(2, 3)], name="broken")
    with pytest.raises(PythonLayerError) as info:
        check_gradient(layer, [np.ones((2, 3))])
    err = info.value
    assert isinstance(err, TrainnetError) and err.layer == "broken"
    assert str(err).startswith("layer 'broken' (Python tn_pylayers.Fails): forward raised "
                               "ValueError: cannot handle 6 values")
    assert "in helper" in err.user_traceback and "tn_pylayers.py" in err.user_traceback
    assert "python.py" not in err.user_traceback  # only the user's frames


def test_reshaping_a_top_after_setup_is_an_error_naming_the_layer():
    with pytest.raises(TrainnetError, match=r"layer 'grows' \(Python tn_pylayers.Grows\): reshapes "
                                            r"a blob from \(2, 3\) to \(7,\) after setup"):
        check_gradient(py("Grows", [(2, 3)], name="grows"), [np.ones((2, 3))])


# --- trainnet plan --------------------------------------------------------------------------------

def test_plan_names_the_python_modules(tmp_path):
    write_net(tmp_path)
    out = cli("plan", tmp_path / "net.prototxt")
    assert out.code == 0, out.stderr
    assert "python modules:    tn_pylayers (imported from sys.path)" in out.stdout
    assert "python tn_pylayers.Scale" in out.stdout


# --- the GPU path -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shapes", [("Scale", [(2, 3, 4)]), ("EuclideanLoss", [(4, 3), (4, 3)]),
                                           ("DeviceScale", [(2, 3, 4)])])
def test_gpu_pass_matches_the_cpu(gpu_device, layer, shapes):
    built = py(layer, shapes, param_str="1.5")
    _, gpu = check_parity(built, [RNG.normal(size=s) for s in shapes], gpu_device, passes=2)
    bound = gpu.state.bottom[0].data
    if layer == "DeviceScale":  # the device's own arrays, no copies
        assert not gpu.state.host_copies and bound is gpu.bottom[0]
    else:  # host copies, made by download
        assert gpu.state.host_copies and isinstance(bound, np.ndarray) and bound is not gpu.bottom[0]


def test_gpu_net_with_python_layers_trains_as_on_the_cpu(gpu_device, tmp_path):
    cfg = load_solver(write_net(tmp_path))
    cpu = Solver(cfg)
    gpu = Solver(cfg, device=gpu_device)
    assert gpu.net.graph_blocker == "scale" and not gpu.graph
    for s in (cpu, gpu):
        s.cfg = s.cfg.model_copy(update={"max_iter": 5, "snapshot": 0, "snapshot_after_train": False})
        s.solve()
    np.testing.assert_allclose(gpu_device.to_host(gpu.net.params.data), cpu.net.params.data,
                               rtol=1e-5, atol=1e-6)
