"""Eltwise: SUM/PROD/MAX against element loops (Caffe's MAX ties), gradients, a fused ReLU,
CPU/GPU parity (more bottoms than one launch takes), user errors, and a ResNet-style block whose
in-place ReLU the compiler folds into the Eltwise."""

import numpy as np
import pytest

from gpu_check import check_parity, relative_error
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net, format_plan
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

SHAPE = (2, 3, 4, 5)


def eltwise(params, n, shape=SHAPE):
    return build("Eltwise", params, [shape] * n)


def reference(op, xs, coeff=None, stable=True, dy=None):
    """Caffe's forward (and backward for top gradient ``dy``) one element at a time, in float64:
    the top, the winning bottom of MAX, and the bottom gradients."""
    xs = [np.asarray(x, np.float64).reshape(-1) for x in xs]
    n, size = len(xs), xs[0].size
    coeff = coeff or [1.0] * n
    top, win, dxs = np.zeros(size), np.zeros(size, int), [np.zeros(size) for _ in xs]
    for e in range(size):
        v = [x[e] for x in xs]
        if op == "SUM":
            top[e] = sum(c * a for c, a in zip(coeff, v))
        elif op == "PROD":
            top[e] = np.prod(v)
        else:
            top[e], win[e] = (v[0], 0) if v[0] > v[1] else (v[1], 1)
            for k in range(2, n):
                if v[k] > top[e]:
                    top[e], win[e] = v[k], k
        if dy is None:
            continue
        g = dy.reshape(-1)[e]
        for k in range(n):
            if op == "SUM":
                dxs[k][e] = coeff[k] * g
            elif op == "MAX":
                dxs[k][e] = g if win[e] == k else 0.0
            elif stable:
                dxs[k][e] = g * np.prod([v[j] for j in range(n) if j != k])
            else:
                dxs[k][e] = g * top[e] / v[k]
    return top, win, dxs


def inputs(n, seed=0, ties=False, shape=SHAPE):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many elements where bottoms tie
        return [rng.integers(-1, 2, size=shape).astype(np.float64) for _ in range(n)]
    return [rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1, 1], size=shape) for _ in range(n)]


CASES = [
    ({}, 2),
    ({"coeff": [0.5, -2.0, 1.0]}, 3),
    ({"operation": "PROD"}, 2),
    ({"operation": "PROD"}, 4),
    ({"operation": "PROD", "stable_prod_grad": False}, 3),
    ({"operation": "MAX"}, 2),
    ({"operation": "MAX"}, 4),
]


@pytest.mark.parametrize("params, n", CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_forward_and_backward_match_loops(params, n, ties):
    xs = inputs(n, seed=n, ties=ties)
    if ties and params.get("stable_prod_grad") is False:
        xs = [np.where(x == 0, 2.0, x) for x in xs]  # top / bottom needs nonzero bottoms
    layer = eltwise(params, n)
    io = make_io(layer, xs)
    layer.forward(io, CPU)
    dy = np.random.default_rng(9).normal(size=SHAPE)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    top, win, dxs = reference(params.get("operation", "SUM"), xs, params.get("coeff"),
                              params.get("stable_prod_grad", True), dy)
    np.testing.assert_allclose(io.top[0].reshape(-1), top, rtol=1e-12)
    if params.get("operation") == "MAX":
        np.testing.assert_array_equal(io.buf["winner"].reshape(-1), win)
    for got, want in zip(io.bottom_diff, dxs):
        np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-12, atol=1e-15)


def test_max_ties_go_to_bottom_1_then_to_the_earliest():
    """Caffe's CPU: ``a > b ? a : b`` for the first pair, a strict ``>`` for later bottoms."""
    ones = np.ones((1, 4))
    layer = eltwise({"operation": "MAX"}, 4, (1, 4))
    io = run_forward(layer, [ones, ones, ones * np.array([1, 2, 2, 0]), ones * np.array([1, 2, 3, 0])])
    np.testing.assert_array_equal(io.buf["winner"], [[1, 2, 3, 1]])


@pytest.mark.parametrize("params, n", CASES)
def test_gradients(params, n):
    xs = inputs(n, seed=10 + n)
    if params.get("operation") == "MAX":  # values well apart, so a small step never swaps a max
        rng = np.random.default_rng(n)
        xs = list((rng.permutation(n * np.prod(SHAPE)) * 0.1).reshape((n,) + SHAPE))
    check_gradients(eltwise(params, n), xs)


@pytest.mark.parametrize("params, n", CASES)
def test_fused_relu_is_the_layer_then_an_in_place_relu(params, n):
    xs = inputs(n, seed=20 + n)
    dy = np.random.default_rng(5).normal(size=SHAPE)
    plain, fused = eltwise(params, n), eltwise(params, n)
    ctx = StepContext(fused_relu=True)  # as the compiler decides when an in-place ReLU follows
    ref = make_io(plain, [x.copy() for x in xs])
    plain.forward(ref, CPU)
    relu = build("ReLU", {}, [SHAPE])
    relu_io = make_io(relu, [ref.top[0]])  # in place: top and its diff are the bottom's
    relu_io.top, relu_io.bottom_diff = relu_io.bottom, [ref.top_diff[0]]
    relu_io.top_diff = relu_io.bottom_diff
    relu.forward(relu_io, CPU)
    ref.top_diff[0][...] = dy
    relu.backward(relu_io, CPU)
    plain.backward(ref, CPU)

    io = make_io(fused, [x.copy() for x in xs], ctx=ctx)
    fused.forward(io, CPU)
    io.top_diff[0][...] = dy
    fused.backward(io, CPU)
    assert (ref.top[0] == 0).any() and (ref.top[0] > 0).any()
    for want, got in [(ref.top, io.top), (ref.top_diff, io.top_diff), (ref.bottom_diff, io.bottom_diff)]:
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
    assert fused.reads_top(ctx) and not plain.reads_top(StepContext())


def test_forward_only_keeps_nothing_and_gives_the_same_top():
    xs = inputs(3, seed=3, ties=True)
    full = eltwise({"operation": "MAX"}, 3)
    only, ctx = eltwise({"operation": "MAX"}, 3), StepContext(forward_only=True)
    assert only.buffers(ctx) == {} and "winner" in full.buffers()
    np.testing.assert_array_equal(run_forward(only, xs, ctx=ctx).top[0], run_forward(full, xs).top[0])


def test_backward_reads_only_what_it_needs():
    assert eltwise({"operation": "PROD"}, 2).backward_reads_bottom
    for params in ({}, {"operation": "MAX"}, {"operation": "PROD", "stable_prod_grad": False}):
        assert not eltwise(params, 2).backward_reads_top
    assert not eltwise({}, 2).backward_reads_bottom
    assert not eltwise({"operation": "MAX"}, 2).backward_reads_bottom


# --- GPU parity ------------------------------------------------------------------------------------
GPU_CASES = CASES + [
    ({"coeff": [1.0, 0.5, -1.0, 2.0, 0.25, -0.75]}, 6),   # two launches, the second accumulating
    ({"operation": "PROD"}, 6),
    ({"operation": "PROD", "stable_prod_grad": False}, 6),
    ({"operation": "MAX"}, 9),                            # three launches
]


@pytest.mark.parametrize("params, n", GPU_CASES)
@pytest.mark.parametrize("fused_relu", [False, True])
def test_gpu_parity(gpu_device, params, n, fused_relu):
    layer = eltwise(params, n)
    ties = params.get("operation") == "MAX"
    propagate = [True] * n if n != 3 else [True, False, True]
    cpu, gpu = check_parity(layer, inputs(n, seed=30 + n, ties=ties), gpu_device,
                            propagate_down=propagate, ctx=StepContext(fused_relu=fused_relu))
    if ties:
        np.testing.assert_array_equal(gpu_device.to_host(gpu.buf["winner"]), cpu.buf["winner"])


@pytest.mark.parametrize("params, n", [({"operation": "MAX"}, 6), ({"coeff": [2.0, -1.0]}, 2)])
def test_gpu_parity_forward_only(gpu_device, params, n):
    layer = eltwise(params, n)
    check_parity(layer, inputs(n, seed=40, ties=True), gpu_device, backward=False,
                 ctx=StepContext(forward_only=True))


# --- user errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("params, shapes, message", [
    ({"operation": "PROD", "coeff": [1, 2]}, [SHAPE] * 2, "coeff is only for operation SUM, not PROD"),
    ({"operation": "MAX", "coeff": [1, 2]}, [SHAPE] * 2, "coeff is only for operation SUM, not MAX"),
    ({"coeff": [1, 2]}, [SHAPE] * 3, "coeff has 2 values for 3 bottoms"),
    ({}, [SHAPE, (2, 3, 4, 6)], r"bottom 1 has shape \(2, 3, 4, 6\), bottom 0 has \(2, 3, 4, 5\)"),
])
def test_user_errors(params, shapes, message):
    with pytest.raises(ConfigError, match=message):
        build("Eltwise", params, shapes)


def test_bad_operation_and_one_bottom_are_refused():
    from pydantic import ValidationError
    with pytest.raises(ValidationError):
        build("Eltwise", {"operation": "MIN"}, [SHAPE] * 2)
    text = ("name: n\nlayer:\n  - {name: in, type: Input, top: a, shape: {dim: [2, 3]}}\n"
            "  - {name: e, type: Eltwise, bottom: a, top: b}\n")
    with pytest.raises(ConfigError, match="expects at least 2 bottoms, got 1"):
        compile_net(load_net_text(text, "x.yaml"), "TRAIN")


# --- a ResNet-style block: conv, conv, Eltwise SUM, in-place ReLU -----------------------------------
BLOCK = """\
name: block
force_backward: true
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [2, 3, 6, 6]}, {dim: [2]}]}
  - name: conv_a
    type: Convolution
    bottom: data
    top: a
    num_output: 4
    kernel_size: 3
    pad: 1
    weight_filler: {type: gaussian, std: 0.3}
    bias_filler: {type: gaussian, std: 0.3}
  - name: conv_b
    type: Convolution
    bottom: data
    top: b
    num_output: 4
    kernel_size: 1
    weight_filler: {type: gaussian, std: 0.3}
  - {name: sum, type: Eltwise, bottom: [a, b], top: sum, coeff: [1, -0.5]}
  - {name: relu, type: ReLU, bottom: sum, top: sum}
  - {name: ip, type: InnerProduct, bottom: sum, top: ip, num_output: 3,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def test_the_compiler_fuses_the_relu_into_the_eltwise():
    plan = compile_net(load_net_text(BLOCK, "block.yaml"), "TRAIN")
    step = plan.step("sum")
    assert "relu" not in [s.name for s in plan.steps] and step.fused == ["relu"]
    assert step.ctx.fused_relu and step.layer.reads_top(step.ctx)
    assert "fused relu" in format_plan(plan)


OPERATIONS = {"SUM": "coeff: [1, -0.5]", "PROD": "operation: PROD", "MAX": "operation: MAX"}


def run_block(device, fuse: bool, operation="SUM", seed=0):
    """One forward and backward of BLOCK; the loss, the input gradient and the parameter
    gradients, on the host."""
    text = BLOCK.replace("coeff: [1, -0.5]", OPERATIONS[operation])
    plan = compile_net(load_net_text(text, "block.yaml"), "TRAIN", fuse=fuse, gpu=device.is_gpu)
    assert bool(plan.step("sum").fused) == fuse
    net = Net(plan, device, rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    net.set_input("data", rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
    net.set_input("label", np.array([0, 2], np.float32))
    loss = net.forward_backward()
    grads = {k: device.to_host(v) for k, v in net.params.named(net.params.diff).items()}
    return loss, device.to_host(net.diff("data")), grads


@pytest.mark.parametrize("operation", OPERATIONS)
def test_fused_and_unfused_blocks_agree_on_the_cpu_and_the_gpu(gpu_device, operation):
    for device in (CPU, gpu_device):
        fused, unfused = run_block(device, True, operation), run_block(device, False, operation)
        assert fused[0] == pytest.approx(unfused[0], rel=1e-6)
        np.testing.assert_allclose(fused[1], unfused[1], rtol=1e-5, atol=1e-7)
        assert (fused[1] != 0).any()
        for key in unfused[2]:
            np.testing.assert_allclose(fused[2][key], unfused[2][key], rtol=1e-5, atol=1e-7)
    cpu, gpu = run_block(CPU, True, operation), run_block(gpu_device, True, operation)
    assert gpu[0] == pytest.approx(cpu[0], rel=1e-4)
    assert relative_error(gpu[1], cpu[1]) < 1e-4
    for key in cpu[2]:
        assert relative_error(gpu[2][key], cpu[2][key]) < 1e-4, key


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_forward_only_block_agrees_on_the_cpu_and_the_gpu(gpu_device, operation):
    text = BLOCK.replace("coeff: [1, -0.5]", OPERATIONS[operation])
    tops = []
    for device in (CPU, gpu_device):
        plan = compile_net(load_net_text(text, "block.yaml"), "TEST", gpu=device.is_gpu)
        assert plan.step("sum").fused and plan.step("sum").ctx.forward_only
        net = Net(plan, device, rng=np.random.default_rng(0))
        net.set_input("data", np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32))
        net.set_input("label", np.array([0, 2], np.float32))
        net.forward()
        tops.append(device.to_host(net.data("ip")))
    assert relative_error(tops[1], tops[0]) < 1e-4
