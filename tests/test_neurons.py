"""The elementwise neuron layers (Sigmoid, TanH, PReLU, ELU, AbsVal, Power, Exp, Log, BNLL,
Threshold, Clip, Swish): forward against element loops written from Caffe's definitions,
gradients, CPU/GPU parity for each option, running in place (configured or by the compiler),
whole nets on the CPU and the emulated GPU, and the user errors."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity, relative_error
from layer_cases import Case, layer_tests
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext, layer_class
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

SHAPE = (2, 3, 2, 3)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def power_ref(v, p):
    power, scale, shift = p.get("power", 1.0), p.get("scale", 1.0), p.get("shift", 0.0)
    if power * scale == 0:  # Caffe's constant case: the input is ignored
        return 1.0 if power == 0 else shift ** power
    return (shift + scale * v) ** power


def exp_ref(v, p):
    base = math.e if p.get("base", -1.0) == -1 else p["base"]
    return base ** (p.get("shift", 0.0) + p.get("scale", 1.0) * v)


def log_ref(v, p):
    base = math.e if p.get("base", -1.0) == -1 else p["base"]
    return math.log(p.get("shift", 0.0) + p.get("scale", 1.0) * v) / math.log(base)


def bnll_ref(v, p):
    return v + math.log(1 + math.exp(-v)) if v > 0 else math.log(1 + math.exp(v))


# Caffe's definition of each type, one element at a time (PReLU, which needs the channel, has
# its own loop below).
REFERENCE = {
    "Sigmoid": lambda v, p: sigmoid(v),
    "TanH": lambda v, p: math.tanh(v),
    "ELU": lambda v, p: v if v > 0 else p.get("alpha", 1.0) * (math.exp(v) - 1),
    "AbsVal": lambda v, p: abs(v),
    "Power": power_ref,
    "Exp": exp_ref,
    "Log": log_ref,
    "BNLL": bnll_ref,
    "Threshold": lambda v, p: 1.0 if v > p.get("threshold", 0.0) else 0.0,
    "Clip": lambda v, p: max(p["min"], min(v, p["max"])),
    "Swish": lambda v, p: v * sigmoid(p.get("beta", 1.0) * v),
}


def normal(seed=0, shape=SHAPE, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


def uniform(lo, hi, seed=0, shape=SHAPE):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape)


def away_from(x, points, margin=0.02):
    """``x`` with every value within ``margin`` of a kink moved ``2 margin`` off it."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, 2 * margin, -2 * margin)
    return x


# (type, params, input, kink for the gradient check, parity rtol): every option and kernel branch.
CASES = [
    ("Sigmoid", {}, normal(0, scale=3), None, 1e-4),
    ("TanH", {"engine": "CAFFE"}, normal(1, scale=2), None, 1e-4),
    ("ELU", {}, normal(2), 0.0, 1e-4),
    ("ELU", {"alpha": 0.5}, normal(3), 0.0, 1e-4),
    ("ELU", {"alpha": 0.0}, normal(4), 0.0, 1e-4),
    ("AbsVal", {}, normal(5), 0.0, 1e-5),
    ("PReLU", {}, normal(6), 0.0, 1e-4),
    ("PReLU", {"channel_shared": True, "filler": {"type": "gaussian", "std": 0.5}}, normal(7),
     0.0, 1e-4),
    ("Power", {}, normal(8), None, 1e-5),
    ("Power", {"power": 1.0, "scale": -2.0, "shift": 0.5}, normal(9), None, 1e-5),
    ("Power", {"power": 2.0, "scale": 1.5, "shift": -0.5}, normal(10), None, 1e-5),
    ("Power", {"power": 3.0}, normal(11), None, 1e-4),
    ("Power", {"power": 2.5, "scale": 0.5, "shift": 2.0}, uniform(-2.5, 2.5, 12), None, 1e-4),
    ("Power", {"power": -1.0, "scale": 2.0, "shift": 0.5}, uniform(0.5, 2, 13), None, 1e-4),
    ("Power", {"power": 0.0, "scale": 3.0}, normal(14), None, 1e-5),
    ("Power", {"power": 2.0, "scale": 0.0, "shift": 3.0}, normal(15), None, 1e-5),
    ("Exp", {}, normal(16), None, 1e-4),
    ("Exp", {"base": 2.0, "scale": 0.5, "shift": 1.0}, normal(17), None, 1e-4),
    ("Exp", {"base": 0.5, "scale": -1.5, "shift": -0.5}, normal(18), None, 1e-4),
    ("Exp", {"shift": 0.7}, normal(19), None, 1e-4),
    ("Log", {}, uniform(0.3, 4, 20), None, 1e-4),
    ("Log", {"base": 2.0, "scale": 0.5, "shift": 3.0}, normal(21), None, 1e-4),
    ("Log", {"base": 10.0, "scale": -1.0, "shift": 4.0}, normal(22), None, 1e-4),
    ("BNLL", {}, normal(23, scale=4), None, 1e-4),
    ("Threshold", {}, normal(24), None, 1e-5),
    ("Threshold", {"threshold": 0.25}, np.append(normal(25).reshape(-1)[:-2], [0.25, -0.25])
     .reshape(SHAPE), None, 1e-5),
    ("Clip", {"min": -0.5, "max": 0.75}, away_from(normal(26), [-0.5, 0.75]), None, 1e-5),
    ("Clip", {"min": 0.0, "max": 0.0}, away_from(normal(27), [0.0]), None, 1e-5),
    ("Swish", {}, normal(28, scale=2), None, 1e-4),
    ("Swish", {"beta": 2.5}, normal(29, scale=2), None, 1e-4),
    ("Swish", {"beta": 0.0}, normal(30), None, 1e-4),
]


def prelu_reference(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    y = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        a = slope[0] if slope.size == 1 else slope[idx[1]]
        v = x[idx]
        y[idx] = max(v, 0) + a * min(v, 0)
    return y


# --- the table: forward against the definitions, gradients, parity, in place ------------------

def caffe_definition(bottoms, blobs, params, type_name):
    x = bottoms[0]
    if type_name == "PReLU":
        return prelu_reference(x, blobs[0])
    return np.array([REFERENCE[type_name](v, params) for v in x.reshape(-1)]).reshape(x.shape)


def table_case(type_name, params, x, kink, rtol) -> Case:
    """Forward against the definition, gradients, parity within ``rtol``, and in place (each
    differentiable type runs configured in place; Threshold has no backward)."""
    differentiable = layer_class(type_name).has_backward
    name = "-".join(f"{k}={v}" for k, v in params.items() if k != "filler") or "default"
    return Case(type_name, params, [x], ref=partial(caffe_definition, type_name=type_name),
                atol=1e-12, grad=differentiable, kink=kink, gpu_rtol=rtol,
                in_place=differentiable, id=name)


globals().update(layer_tests([table_case(*c) for c in CASES]))


# --- special cases ------------------------------------------------------------------------------

def test_one_flop_per_element():
    for type_name, params, x, *_ in CASES:
        layer = build(type_name, params, [x.shape])
        assert layer.top_shapes == [x.shape] and layer.flops() == x.size, type_name


def test_bnll_is_stable_far_from_zero():
    x = np.array([-200.0, -60.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 60.0, 200.0], np.float32)
    y = run_forward(build("BNLL", {}, [x.shape]), [x]).top[0]
    want = [math.log1p(math.exp(v)) if v < 30 else v + math.log1p(math.exp(-v)) for v in x.astype(float)]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-37)  # below float32's range: 0
    assert np.isfinite(y).all()


def test_prelu_slopes_and_default_filler():
    layer = build("PReLU", {}, [(2, 4, 3)])
    (blob,) = layer.param_blobs()
    assert blob.shape == (4,) and blob.filler.type == "constant" and blob.filler.value == 0.25
    assert build("PReLU", {"channel_shared": True}, [(2, 4, 3)]).param_blobs()[0].shape == (1,)
    x = normal(40, (3, 4))  # an (N, C) bottom: one position per channel
    io = run_forward(build("PReLU", {}, [x.shape]), [x])
    np.testing.assert_allclose(io.top[0], prelu_reference(x, io.params[0]), rtol=1e-12)


def test_clip_gradient_passes_at_the_bounds():
    """Caffe's rule: dx = dy where min <= x <= max, the bounds included."""
    x = np.array([-2.0, -0.5, 0.1, 0.75, 3.0])
    layer = build("Clip", {"min": -0.5, "max": 0.75}, [x.shape])
    io = make_io(layer, [x])
    layer.forward(io, CPU)
    io.top_diff[0][...] = [1.0, 2.0, 3.0, 4.0, 5.0]
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.top[0], [-0.5, -0.5, 0.1, 0.75, 0.75])
    np.testing.assert_array_equal(io.bottom_diff[0], [0.0, 2.0, 3.0, 4.0, 0.0])


def test_absval_gradient_at_zero_is_zero():
    x = np.array([-1.5, 0.0, 2.0])
    layer = build("AbsVal", {}, [x.shape])
    io = make_io(layer, [x])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.bottom_diff[0], [-1.0, 0.0, 1.0])


def test_power_constant_cases_have_zero_gradient():
    for params, value in (({"power": 0.0, "scale": 2.0}, 1.0),
                          ({"power": 2.0, "scale": 0.0, "shift": 3.0}, 9.0)):
        x = normal(41, (5,))
        layer = build("Power", params, [x.shape])
        assert not layer.backward_reads_bottom
        io = make_io(layer, [x])
        layer.forward(io, CPU)
        np.testing.assert_array_equal(io.top[0], value)
        io.top_diff[0][...] = 1.0
        io.bottom_diff[0][...] = np.nan
        layer.backward(io, CPU)
        np.testing.assert_array_equal(io.bottom_diff[0], 0.0)


def test_power_gradient_where_the_base_is_zero():
    """Caffe's y / (shift + scale x) is NaN there; the derivative itself is 0 for power > 1."""
    x = np.array([-1.0, 0.5, 2.0])
    layer = build("Power", {"power": 3.0, "scale": 2.0, "shift": -1.0}, [x.shape])
    io = make_io(layer, [x])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], [6 * 9.0, 0.0, 6 * 9.0])


# --- gradients ----------------------------------------------------------------------------------

def test_prelu_slope_gradient_alone():
    """A bottom that takes no gradient: only the slope's is written."""
    x = normal(42)
    layer = build("PReLU", {}, [x.shape])
    check_gradients(layer, [x], check_bottoms=[False], kink=0.0, kink_range=1e-3)


# --- CPU/GPU parity -----------------------------------------------------------------------------

@pytest.mark.parametrize("channel_shared", [False, True])
def test_gpu_prelu_slope_gradient_alone(channel_shared, gpu_device):
    x = normal(43, (3, 5, 4, 2))
    layer = build("PReLU", {"channel_shared": channel_shared}, [x.shape])
    _, gpu = check_parity(layer, [x], gpu_device, propagate_down=[False])
    assert gpu.bottom_diff[0] is None and gpu.param_diff[0] is not None


def test_gpu_prelu_with_a_frozen_slope(gpu_device):
    text = neuron_net("PReLU", True, ", param: {lr_mult: 0}")
    cpu = run_net(text)
    assert "act.0" in cpu[2] and not cpu[2]["act.0"].any()  # no step writes it: cleared
    assert_same_run(run_net(text, gpu_device), cpu, 1e-4)


def test_gpu_forward_only_swish_keeps_no_sigmoid(gpu_device):
    x = normal(44)
    layer = build("Swish", {"beta": 1.5}, [x.shape])
    assert layer.buffers(StepContext(forward_only=True, gpu=True)) == {}
    check_parity(layer, [x], gpu_device, backward=False, rtol=1e-4, ctx=StepContext(forward_only=True))


# --- in place -----------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, reads_bottom", [
    ("Sigmoid", False), ("TanH", False), ("ELU", False), ("Exp", False), ("Swish", False),
    ("AbsVal", True), ("PReLU", True), ("Power", True), ("Log", True), ("BNLL", True),
    ("Clip", True)])
def test_backward_reads_declared(type_name, reads_bottom):
    params = {"Clip": {"min": 0.0, "max": 1.0}, "Power": {"power": 2.0}}.get(type_name, {})
    layer = build(type_name, params, [SHAPE])
    assert layer.in_place_ok
    assert layer.backward_reads_bottom == reads_bottom
    assert layer.backward_reads_top == (not reads_bottom)
    assert not build("Power", {"power": 1.0, "scale": 3.0}, [SHAPE]).backward_reads_bottom


# --- whole nets ---------------------------------------------------------------------------------

NET_PARAMS = {
    "Sigmoid": "", "TanH": "", "ELU": ", alpha: 0.5", "AbsVal": "", "BNLL": "",
    "PReLU": ", filler: {type: uniform, min: -0.5, max: 0.5}",
    "Power": ", power: 2.5, scale: 0.2, shift: 2.0", "Exp": ", base: 2.0, scale: 0.5, shift: 0.3",
    "Log": ", base: 2.0, scale: 0.2, shift: 3.0", "Clip": ", min: -0.3, max: 0.4",
    "Swish": ", beta: 1.5",
}


def neuron_net(type_name: str, in_place: bool, extra: str = "") -> str:
    top = "h" if in_place else "n"
    return f"""
name: {type_name.lower()}-net
layer:
  - {{name: in, type: Input, top: [x, label], shape: [{{dim: [4, 3, 2, 2]}}, {{dim: [4]}}]}}
  - {{name: ip1, type: InnerProduct, bottom: x, top: h, num_output: 6, weight_filler: {{type: gaussian, std: 0.3}}}}
  - {{name: act, type: {type_name}, bottom: h, top: {top}{NET_PARAMS.get(type_name, '')}{extra}}}
  - {{name: ip2, type: InnerProduct, bottom: {top}, top: out, num_output: 3, weight_filler: {{type: gaussian, std: 0.3}}}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [out, label], top: loss}}
"""


def run_net(text: str, device=CPU, phase: str = "TRAIN", **options):
    """One forward and backward pass on fixed inputs; (loss, output, named parameter gradients)."""
    plan = compile_net(load_net_text(text, "n.yaml"), phase, gpu=device.is_gpu, **options)
    net = Net(plan, device, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    net.set_input("x", rng.normal(size=(4, 3, 2, 2)).astype(np.float32))
    net.set_input("label", np.array([0, 2, 1, 2], np.float32))
    loss = net.forward()
    out = device.to_host(net.data("out")).copy()  # backward may reuse its memory
    grads = {}
    if plan.backward:
        net.backward()
        grads = {k: device.to_host(v).copy() for k, v in net.params.named(net.params.diff).items()}
    return loss, out, grads, plan


def assert_same_run(got, want, rtol):
    assert got[0] == pytest.approx(want[0], rel=rtol)
    assert relative_error(got[1], want[1]) <= rtol
    assert got[2].keys() == want[2].keys()
    for k in want[2]:
        assert relative_error(got[2][k], want[2][k]) <= rtol, k


@pytest.mark.parametrize("type_name", sorted(NET_PARAMS))
def test_net_in_place_equals_out_of_place(type_name):
    in_place = run_net(neuron_net(type_name, True))
    apart = run_net(neuron_net(type_name, False), reuse_memory=False, in_place=False)
    assert "h" in in_place[3].steps[2].in_place
    assert_same_run(in_place, apart, 1e-6)
    assert in_place[2]["ip1.0"].any()  # the gradient went through the layer


@pytest.mark.parametrize("type_name", sorted(NET_PARAMS))
@pytest.mark.parametrize("in_place", [True, False])
def test_net_on_the_gpu_matches_the_cpu(type_name, in_place, gpu_device):
    text = neuron_net(type_name, in_place)
    assert_same_run(run_net(text, gpu_device), run_net(text, CPU), 1e-4)


@pytest.mark.parametrize("type_name, auto", [
    ("Sigmoid", True), ("TanH", True), ("ELU", True), ("Exp", True), ("Swish", True),
    ("AbsVal", False), ("PReLU", False), ("Power", False), ("Log", False), ("BNLL", False),
    ("Clip", False)])
def test_compiler_runs_in_place_what_backward_allows(type_name, auto):
    plan = run_net(neuron_net(type_name, False))[3]
    assert next(s for s in plan.steps if s.name == "act").auto_in_place == auto
    test_plan = compile_net(load_net_text(neuron_net(type_name, False), "n.yaml"), "TEST")
    assert next(s for s in test_plan.steps if s.name == "act").auto_in_place  # no backward


# --- Threshold: no backward ---------------------------------------------------------------------

def test_threshold_on_the_gradient_path_is_refused():
    with pytest.raises(ConfigError, match=r"n.yaml:\d+: layer 'act' \(Threshold\): Threshold has "
                       r"no backward, but the loss needs a gradient through it to bottom 'h'; "
                       r"set propagate_down: false"):
        compile_net(load_net_text(neuron_net("Threshold", False), "n.yaml"), "TRAIN")


@pytest.mark.parametrize("in_place", [True, False])
def test_threshold_with_propagate_down_false_cuts_the_gradient(in_place, gpu_device):
    text = neuron_net("Threshold", in_place, ", propagate_down: [false]")
    loss, out, grads, plan = run_net(text)
    act = next(s for s in plan.steps if s.name == "act")
    assert not act.need_backward
    assert not next(s for s in plan.steps if s.name == "ip1").need_backward
    assert not grads["ip1.0"].any() and grads["ip2.0"].any()
    assert_same_run(run_net(text, gpu_device), (loss, out, grads), 1e-5)


THRESHOLD_ON_INPUT = """
layer:
  - {name: in, type: Input, top: [x, label], shape: [{dim: [4, 3, 2, 2]}, {dim: [4]}]}
  - {name: act, type: Threshold, bottom: x, top: x, threshold: 0.1}
  - {name: ip2, type: InnerProduct, bottom: x, top: out, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [out, label], top: loss}
"""


def test_threshold_below_every_learned_layer_and_in_test_compiles():
    loss, out, grads, plan = run_net(THRESHOLD_ON_INPUT)
    assert not next(s for s in plan.steps if s.name == "act").need_backward
    assert math.isfinite(loss)
    run_net(neuron_net("Threshold", True), phase="TEST")  # no backward at all


# --- user errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name, params, shape, match", [
    ("Clip", {"min": 1.0, "max": -1.0}, SHAPE, r"min \(1\) is greater than max \(-1\)"),
    ("Exp", {"base": -2.0}, SHAPE, r"base must be positive and finite, or -1 for e; got -2"),
    ("Exp", {"base": 0.0}, SHAPE, r"base must be positive"),
    ("Log", {"base": 1.0}, SHAPE, r"base must be positive, not 1, and finite"),
    ("PReLU", {}, (5,), r"needs a bottom with at least 2 axes \(N, C, ...\), got \(5,\)"),
])
def test_config_errors(type_name, params, shape, match):
    with pytest.raises(ConfigError, match=match):
        build(type_name, params, [shape])


@pytest.mark.parametrize("type_name, params, match", [
    ("Clip", {"min": 0.0}, "max"),
    ("Clip", {"max": 0.0}, "min"),
    ("ELU", {"alpha": -1.0}, "greater than or equal to 0"),
    ("Swish", {"beta": "big"}, "beta"),
    ("Sigmoid", {"engine": "FAST"}, "engine"),
    ("PReLU", {"channel_shared": True, "slope": 0.1}, "slope"),
    ("Log", {"base": float("inf")}, "must be a finite number"),   # every float field is finite
])
def test_parameter_errors(type_name, params, match):
    with pytest.raises(ValidationError, match=match):
        build(type_name, params, [SHAPE])


def test_net_config_error_names_the_file_and_layer():
    text = neuron_net("Clip", False).replace("min: -0.3, max: 0.4", "min: 2.0, max: 0.4")
    with pytest.raises(ConfigError, match=r"n.yaml:\d+: layer 'act' \(Clip\): min \(2\) is greater"):
        compile_net(load_net_text(text, "n.yaml"), "TRAIN")
