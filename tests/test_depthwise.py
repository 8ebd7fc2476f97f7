"""Depthwise convolution (group == channels == num_output): the predicate that picks the direct
paths, the CPU's direct pass (``depthwise.forward_cpu``/``backward_cpu``) against the loop
reference and the gradient checker, its buffers, and the direct GPU kernels against the CPU
(forward, bottom and weight gradients, bias, fused ReLU, stride, pad, dilation)."""

import numpy as np
import pytest

from gpu_check import check_parity, relative_error
from layer_check import check_gradients, make_io
from test_convolution import FUSED, ONLY, ONLY_FUSED, forward_only, pair, ref_conv
from trainnet.layers import depthwise, threads
from trainnet.layers.base import StepContext
from trainnet.layers.convolution import Convolution
from trainnet.runtime.device import CPU


def build(type_name, params, shapes):
    """A depthwise Convolution (``type_name``): its CPU pass is depthwise.py's direct one."""
    assert type_name == "Convolution"
    return Convolution("layer", Convolution.Params.model_validate(params), "TRAIN",
                       [tuple(s) for s in shapes])


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
MORE_CASES = [  # the CPU's blocks and the remaining geometry
    ((3, 6, 5, 5), dw(6, kernel_size=1)),                              # 1x1: a per-channel scale
    ((2, 3, 11, 9), dw(3, kernel_size=[3, 5], pad=[0, 3], stride=[3, 2], dilation=[2, 1])),
    ((1, 2, 9, 9), dw(2, kernel_size=2, stride=2, pad=1, dilation=3)),
    ((2, 3, 300, 250), dw(3, pad=1)),           # one image's channel larger than a block
    ((5, 40, 30, 30), dw(40, pad=1, stride=2)),  # blocks of a few channels of one image
]


def reference(params, io, x, dy):
    b = io.params[1] if params.get("bias_term", True) else None
    return ref_conv(x, io.params[0], b, dy, pair(params, "pad", 0), pair(params, "stride", 1),
                    pair(params, "dilation", 1), params["group"])


def run_both(layer, x, dy, ctx=StepContext()):
    io = make_io(layer, [x], ctx=ctx)
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    return io


def test_the_predicate():
    assert build("Convolution", dw(8, pad=1), [(1, 8, 5, 5)]).depthwise
    assert build("Convolution", dw(4, kernel_size=5), [(1, 4, 5, 5)]).depthwise
    for channels, params in [(8, dw(8, num_output=16)), (8, dw(4, num_output=8)),
                             (8, {"num_output": 8, "kernel_size": 3})]:
        assert not build("Convolution", params, [(1, channels, 5, 5)]).depthwise


def test_buffers():
    """No columns: per-call scratch only, a padded bottom (a chunk of images when forward-only,
    none without padding) and one block's product; none on the GPU."""
    layer = build("Convolution", dw(4, pad=1), [(6, 4, 7, 6)])
    bufs = layer.buffers(StepContext())
    assert set(bufs) == {"pad", "tap"} and bufs["pad"].shape == (6, 4, 9, 8)
    assert all(b.scratch for b in bufs.values())
    assert bufs["tap"].shape == (threads.count(), 6 * 4 * 7 * 6)
    layer.forward_only_bytes = 2 * 4 * 9 * 8 * 4  # two images
    assert layer.buffers(ONLY)["pad"].shape == (2, 4, 9, 8)
    assert set(build("Convolution", dw(4), [(6, 4, 7, 6)]).buffers(ONLY)) == {"tap"}
    gpu = StepContext(gpu=True)
    assert layer.buffers(gpu) == {} and layer.reads_bottom(gpu)


def test_convolution_takes_the_direct_path_on_the_cpu():
    params = Convolution.Params.model_validate(dw(4, pad=1))
    layer = Convolution("layer", params, "TRAIN", [(2, 4, 7, 6)])
    assert set(layer.buffers(StepContext())) == {"pad", "tap"}


@pytest.mark.parametrize("shape,params", CASES + MORE_CASES)
def test_cpu_matches_naive_reference(shape, params):
    """float64: the loops' sums in another order, to 1e-10."""
    rng = np.random.default_rng(0)
    layer = build("Convolution", params, [shape])
    x, dy = rng.normal(size=shape), rng.normal(size=layer.top_shapes[0])
    io = run_both(layer, x, dy)
    outputs = [io.top[0], io.bottom_diff[0]] + io.param_diff
    for got, want in zip(outputs, reference(params, io, x, dy)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,params", [CASES[0], CASES[1], MORE_CASES[3]])
def test_cpu_float32_matches_the_reference(shape, params):
    """float32, as a Net runs: within 1e-5 of the largest value (the weight gradient's sums over
    n, h, w are the longest: 1e-4 relative to its largest value)."""
    rng = np.random.default_rng(5)
    layer = build("Convolution", params, [shape])
    x, dy = rng.normal(size=shape).astype(np.float32), rng.normal(size=layer.top_shapes[0])
    io = run_both(layer, x, dy.astype(np.float32))
    want = reference(params, io, x.astype(np.float64), dy)
    outputs = [io.top[0], io.bottom_diff[0]] + io.param_diff
    for got, ref, tol in zip(outputs, want, [1e-5, 1e-5, 1e-4, 1e-4]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("shape,params",
                         [CASES[1], CASES[4], CASES[5], MORE_CASES[1], MORE_CASES[2]])
def test_gradient_check(shape, params):
    layer = build("Convolution", params, [shape])
    check_gradients(layer, [np.random.default_rng(3).normal(size=shape)])


@pytest.mark.parametrize("shape,params", CASES[:3])
def test_cpu_fused_relu(shape, params):
    """The top rectified, the top gradient masked in place, and the gradients through the mask."""
    rng = np.random.default_rng(7)
    layer = build("Convolution", params, [shape])
    x, dy = rng.normal(size=shape), rng.normal(size=layer.top_shapes[0])
    io = run_both(layer, x, dy, FUSED)
    top = reference(params, io, x, dy)[0]
    masked = dy * (top > 0)
    np.testing.assert_allclose(io.top[0], np.maximum(top, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(io.top_diff[0], masked)
    for got, want in zip([io.bottom_diff[0]] + io.param_diff, reference(params, io, x, masked)[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("frozen", ["weight", "bias", "both", "bottom"])
def test_cpu_frozen_params_and_no_bottom_gradient(frozen):
    shape, params = CASES[0]
    rng = np.random.default_rng(8)
    layer = build("Convolution", params, [shape])
    x, dy = rng.normal(size=shape), rng.normal(size=layer.top_shapes[0])
    io = make_io(layer, [x], propagate_down=[frozen != "bottom"])
    for i in {"weight": [0], "bias": [1], "both": [0, 1], "bottom": []}[frozen]:
        io.param_diff[i] = None
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    for got, want in zip(io.bottom_diff + io.param_diff, reference(params, io, x, dy)[1:]):
        if got is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,params", [CASES[0], CASES[2], MORE_CASES[1]])
def test_cpu_forward_only_in_chunks(shape, params):
    """Forward-only, ``pad`` holds two images: the batch of five in three chunks."""
    shape = (5,) + shape[1:]
    layer = build("Convolution", params, [shape])
    layer.forward_only_bytes = 2 * layer.C * layer.Hp * layer.Wp * 4
    x = np.random.default_rng(9).normal(size=shape)
    io = make_io(layer, [x], ctx=ONLY_FUSED)
    assert "pad" not in io.buf or len(io.buf["pad"]) == 2
    layer.forward(io, CPU)
    top = reference(params, io, x, np.zeros(layer.top_shapes[0]))[0]
    np.testing.assert_allclose(io.top[0], np.maximum(top, 0), rtol=1e-10, atol=1e-10)


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
