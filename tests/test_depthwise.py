"""Depthwise convolution (group == channels == num_output): the predicate that picks the GPU's
direct path, the CPU pass against the loop reference, and the direct GPU kernels against the CPU
(forward, bottom and weight gradients, bias, fused ReLU, stride, pad, dilation)."""

import numpy as np
import pytest

from gpu_check import check_parity, relative_error
from layer_check import build, check_gradients, run_forward
from test_convolution import FUSED, ONLY_FUSED, check_fused_relu, forward_only, pair, ref_conv
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU


def dw(channels, **params):
    return {"num_output": channels, "group": channels, "kernel_size": 3, **params}


CASES = [  # (bottom shape, params): MobileNet's 3x3 stride 1 and 2 with pad 1, and the rest
    ((2, 4, 7, 6), dw(4, pad=1)),
    ((2, 3, 8, 7), dw(3, pad=1, stride=2)),
    ((1, 5, 6, 6), dw(5)),                                # pad 0
    ((2, 3, 7, 8), dw(3, stride=2, bias_term=False)),
    ((1, 4, 9, 8), dw(4, pad=2, dilation=2)),
    ((2, 2, 7, 6), dw(2, kernel_size=5, pad=[2, 1], stride=[1, 2])),  # not 3x3: the loop kernel
    ((1, 3, 6, 20), dw(3, kernel_size=[3, 2], pad=[1, 0])),           # wide: batch-first layout
]


def test_the_predicate():
    assert build("Convolution", dw(8, pad=1), [(1, 8, 5, 5)]).depthwise
    assert build("Convolution", dw(4, kernel_size=5), [(1, 4, 5, 5)]).depthwise
    for channels, params in [(8, dw(8, num_output=16)), (8, dw(4, num_output=8)),
                             (8, {"num_output": 8, "kernel_size": 3})]:
        assert not build("Convolution", params, [(1, channels, 5, 5)]).depthwise


def test_buffers_and_what_backward_reads():
    """On the GPU the direct path declares no buffer and reads the bottom in backward; on the
    CPU the im2col path keeps its columns instead."""
    layer = build("Convolution", dw(4, pad=1), [(2, 4, 7, 6)])
    cpu, gpu = StepContext(), StepContext(gpu=True)
    assert "col" in layer.buffers(cpu) and not layer.reads_bottom(cpu)
    assert layer.buffers(gpu) == {} and layer.reads_bottom(gpu)
    assert layer.buffers(StepContext(gpu=True, forward_only=True)) == {}


@pytest.mark.parametrize("shape,params", CASES)
def test_cpu_matches_naive_reference(shape, params):
    rng = np.random.default_rng(0)
    layer = build("Convolution", params, [shape])
    x = rng.normal(size=shape)
    io = run_forward(layer, [x.copy()])
    dy = rng.normal(size=layer.top_shapes[0])
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    b = io.params[1] if params.get("bias_term", True) else None
    top, dx, dW, db = ref_conv(x, io.params[0], b, dy, pair(params, "pad", 0), pair(params, "stride", 1),
                               pair(params, "dilation", 1), params["group"])
    np.testing.assert_allclose(io.top[0], top, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(io.param_diff[0], dW, rtol=1e-10, atol=1e-10)
    if b is not None:
        np.testing.assert_allclose(io.param_diff[1], db, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,params", [CASES[1], CASES[4]])
def test_gradient_check(shape, params):
    layer = build("Convolution", params, [shape])
    check_gradients(layer, [np.random.default_rng(3).normal(size=shape)])


@pytest.mark.parametrize("shape,params", CASES[:2])
def test_cpu_fused_relu(shape, params):
    check_fused_relu("Convolution", params, shape)


# --- the direct GPU kernels against the CPU ------------------------------------------------------
@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("shape,params", CASES)
def test_gpu_parity(gpu_device, shape, params, fused_relu):
    layer = build("Convolution", params, [shape])
    cpu, gpu = check_parity(layer, [np.random.default_rng(1).normal(size=shape)], gpu_device,
                            ctx=StepContext(fused_relu=fused_relu))
    assert relative_error(gpu_device.to_host(gpu.top_diff[0]), cpu.top_diff[0]) < 1e-4  # masked
    assert gpu.buf == {}


@pytest.mark.parametrize("frozen", ["weight", "bias", "both"])
def test_gpu_frozen_params_and_no_bottom_gradient(gpu_device, frozen):
    shape, params = CASES[1]
    layer = build("Convolution", params, [shape])
    x = np.random.default_rng(2).normal(size=shape)
    check_parity(layer, [x], gpu_device, propagate_down=[False], ctx=FUSED)
    cpu, gpu = check_parity(layer, [x], gpu_device, backward=False, ctx=FUSED)
    off = {"weight": [0], "bias": [1], "both": [0, 1]}[frozen]
    for io in (cpu, gpu):
        for i in off:
            io.param_diff[i] = None
    layer.backward(cpu, CPU)
    layer.backward(gpu, gpu_device)
    for want, got in zip(cpu.bottom_diff + cpu.param_diff, gpu.bottom_diff + gpu.param_diff):
        if want is not None:
            assert relative_error(gpu_device.to_host(got), want) < 1e-4


@pytest.mark.parametrize("shape,params", [CASES[0], CASES[5]])
def test_gpu_forward_only(gpu_device, shape, params):
    layer = forward_only(params, (5,) + shape[1:], images_per_chunk=2)
    check_parity(layer, [np.random.default_rng(4).normal(size=(5,) + shape[1:])], gpu_device,
                 backward=False, passes=2, ctx=ONLY_FUSED)


def test_gpu_replayed_graph_matches_the_cpu(gpu_device):
    """Forward and backward captured once and replayed on new inputs."""
    shape, params = CASES[1]
    layer = build("Convolution", params, [shape])
    rng = np.random.default_rng(6)
    cpu, gpu = check_parity(layer, [rng.normal(size=shape)], gpu_device, ctx=FUSED)
    graph = gpu_device.backend.capture(lambda: (layer.forward(gpu, gpu_device),
                                                layer.backward(gpu, gpu_device)))
    x, dy = rng.normal(size=shape).astype(np.float32), rng.normal(size=cpu.top[0].shape)
    for arrays, host in [((cpu.bottom[0], gpu.bottom[0]), x), ((cpu.top_diff[0], gpu.top_diff[0]), dy)]:
        arrays[0][...] = host
        gpu_device.upload(arrays[1], host.astype(np.float32))
    for arr in gpu.top + gpu.bottom_diff + gpu.param_diff:
        gpu_device.fill(arr, np.nan)
    graph.replay()
    layer.forward(cpu, CPU)
    layer.backward(cpu, CPU)
    for want, got in zip(cpu.top + cpu.bottom_diff + cpu.param_diff,
                         gpu.top + gpu.bottom_diff + gpu.param_diff):
        assert relative_error(gpu_device.to_host(got), want) < 1e-4
