"""CPU/GPU parity of Convolution and InnerProduct: forward, backward, the forward-only chunks of
a convolution, a fused ReLU, frozen parameters, and a pass replayed from a captured graph."""

import numpy as np
import pytest

from gpu_check import check_parity, relative_error
from layer_check import build
from test_convolution import CASES, ONLY, forward_only
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU

IP_CASES = [
    ((4, 6), {"num_output": 3}),
    ((2, 3, 2, 2), {"num_output": 5}),
    ((2, 3, 4), {"num_output": 2, "axis": 2}),
    ((2, 3, 4), {"num_output": 2, "axis": -1, "bias_term": False}),
    ((3, 5), {"num_output": 4, "transpose": True}),
    ((2, 3, 4), {"num_output": 3, "axis": 1, "transpose": True, "bias_term": False}),
]


def layer_with(type_name, params, shape, fused_relu=False):
    """The layer and the context a plan would give it (a fused ReLU or not)."""
    return build(type_name, params, [shape]), StepContext(fused_relu=fused_relu)


def assert_close(device, got, want, what):
    err = relative_error(device.to_host(got), want)
    assert err <= 1e-4, f"{what}: relative error {err:.3g}"


@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("shape,params", CASES)
def test_convolution(gpu_device, shape, params, fused_relu):
    """Groups, pad/stride/dilation, rectangular and 1x1 kernels, no bias; both internal layouts."""
    layer, ctx = layer_with("Convolution", params, shape, fused_relu)
    cpu, gpu = check_parity(layer, [np.random.default_rng(1).normal(size=shape)], gpu_device, ctx=ctx)
    assert_close(gpu_device, gpu.top_diff[0], cpu.top_diff[0], "top_diff (masked in place)")


@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("shape,params", CASES + [
    ((1, 6, 3, 36), {"num_output": 3, "kernel_size": 2, "group": 3, "stride": 2, "bias_term": False}),
])
@pytest.mark.parametrize("images_per_chunk", [1, 3, None])
def test_convolution_forward_only_chunks(gpu_device, shape, params, images_per_chunk, fused_relu):
    """7 images in chunks of 1, 3 (3+3+1) or all at once, in either column layout."""
    shape = (7,) + shape[1:]
    layer = forward_only(params, shape, images_per_chunk)
    check_parity(layer, [np.random.default_rng(2).normal(size=shape)], gpu_device, backward=False,
                 passes=2, ctx=StepContext(forward_only=True, fused_relu=fused_relu))


def test_forward_only_cases_cover_both_column_layouts():
    layers = [forward_only(p, (7,) + s[1:], 3) for s, p in CASES]
    assert {l.batch_last for l in layers} == {True, False}
    assert all(l.chunk(ONLY) == 3 for l in layers)


@pytest.mark.parametrize("shape,params", [CASES[3], CASES[10]])
def test_convolution_frozen_no_bottom_gradient_and_bottom_unread(gpu_device, shape, params):
    """Backward with the weight frozen and no bottom gradient; the bottom poisoned after the
    forward (backward reads the columns instead)."""
    layer, ctx = layer_with("Convolution", params, shape, fused_relu=True)
    x = np.random.default_rng(3).normal(size=shape)
    check_parity(layer, [x], gpu_device, propagate_down=[False], ctx=ctx)
    cpu, gpu = check_parity(layer, [x], gpu_device, backward=False, ctx=ctx)
    gpu_device.fill(gpu.bottom[0], np.nan)
    for io in (cpu, gpu):
        io.param_diff[0] = None
    layer.backward(cpu, CPU)
    layer.backward(gpu, gpu_device)
    assert_close(gpu_device, gpu.bottom_diff[0], cpu.bottom_diff[0], "bottom_diff")
    assert_close(gpu_device, gpu.param_diff[1], cpu.param_diff[1], "bias diff")


@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("shape,params", IP_CASES)
def test_inner_product(gpu_device, shape, params, fused_relu):
    layer, ctx = layer_with("InnerProduct", params, shape, fused_relu)
    cpu, gpu = check_parity(layer, [np.random.default_rng(4).normal(size=shape)], gpu_device, ctx=ctx)
    assert_close(gpu_device, gpu.top_diff[0], cpu.top_diff[0], "top_diff (masked in place)")


@pytest.mark.parametrize("shape,params", [IP_CASES[1], IP_CASES[4]])
def test_inner_product_frozen_and_no_bottom_gradient(gpu_device, shape, params):
    layer, ctx = layer_with("InnerProduct", params, shape, fused_relu=True)
    x = np.random.default_rng(5).normal(size=shape)
    check_parity(layer, [x], gpu_device, propagate_down=[False], ctx=ctx)
    cpu, gpu = check_parity(layer, [x], gpu_device, backward=False, ctx=ctx)
    for io in (cpu, gpu):
        io.param_diff[0] = None
    layer.backward(cpu, CPU)
    layer.backward(gpu, gpu_device)
    assert_close(gpu_device, gpu.bottom_diff[0], cpu.bottom_diff[0], "bottom_diff")
    if len(cpu.params) > 1:
        assert_close(gpu_device, gpu.param_diff[1], cpu.param_diff[1], "bias diff")


@pytest.mark.parametrize("type_name,shape,params,chunked", [
    ("Convolution", *CASES[3], False),
    ("Convolution", *CASES[10], False),
    ("Convolution", (5,) + CASES[3][0][1:], CASES[3][1], True),
    ("Convolution", (5,) + CASES[10][0][1:], CASES[10][1], True),
    ("InnerProduct", *IP_CASES[2], False),
])
def test_replayed_graph_matches_the_cpu(gpu_device, type_name, shape, params, chunked):
    """Forward and backward captured once and replayed on new inputs: every piece of work goes
    through the backend, none is done while capturing."""
    layer = forward_only(params, shape, 2) if chunked else build(type_name, params, [shape])
    ctx = StepContext(forward_only=chunked, fused_relu=True)
    rng = np.random.default_rng(6)
    cpu, gpu = check_parity(layer, [rng.normal(size=shape)], gpu_device, backward=not chunked, ctx=ctx)

    def step():
        layer.forward(gpu, gpu_device)
        if not chunked:
            layer.backward(gpu, gpu_device)
    graph = gpu_device.backend.capture(step)
    x = rng.normal(size=shape).astype(np.float32)
    cpu.bottom[0][...] = x
    gpu_device.upload(gpu.bottom[0], x)
    for i, d in enumerate(cpu.top_diff):
        d[...] = rng.normal(size=d.shape)
        gpu_device.upload(gpu.top_diff[i], d)
    for arr in gpu.top + [d for d in gpu.bottom_diff + gpu.param_diff if d is not None]:
        gpu_device.fill(arr, np.nan)
    graph.replay()
    layer.forward(cpu, CPU)
    assert_close(gpu_device, gpu.top[0], cpu.top[0], "top")
    if not chunked:
        layer.backward(cpu, CPU)
        for what, want, got in [("bottom_diff", cpu.bottom_diff, gpu.bottom_diff),
                                ("param_diff", cpu.param_diff, gpu.param_diff)]:
            for w, g in zip(want, got):
                assert_close(gpu_device, g, w, what)
