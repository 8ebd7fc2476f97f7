"""Convolution against a naive loop-by-loop reference of Caffe's definition, plus the gradient
checker, the config errors, and CPU/GPU parity (a fused ReLU, forward-only chunks, frozen
parameters, a replayed graph)."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity, frozen_weight_backward, relative_error
from layer_cases import Case, layer_tests, normal
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU


def ref_conv(x, w, b, dy, pad, stride, dilation, group):
    """Caffe's convolution written out element by element: the top, and the gradients of
    ``sum(dy * top)`` with respect to the bottom, the weight and the bias."""
    N, C, H, W = x.shape
    cout, cg, kh, kw = w.shape
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    Ho = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    Wo = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    top = np.zeros((N, cout, Ho, Wo))
    dx, dW, db = np.zeros_like(x), np.zeros_like(w), np.zeros(cout)
    per_group = cout // group
    for n in range(N):
        for co in range(cout):
            g = co // per_group
            for oh in range(Ho):
                for ow in range(Wo):
                    acc = 0.0 if b is None else b[co]
                    grad = dy[n, co, oh, ow]
                    db[co] += grad
                    for ci in range(cg):
                        c = g * cg + ci
                        for i in range(kh):
                            h = oh * sh - ph + i * dh
                            for j in range(kw):
                                v = ow * sw - pw + j * dw
                                if 0 <= h < H and 0 <= v < W:
                                    acc += w[co, ci, i, j] * x[n, c, h, v]
                                    dx[n, c, h, v] += w[co, ci, i, j] * grad
                                    dW[co, ci, i, j] += x[n, c, h, v] * grad
                    top[n, co, oh, ow] = acc
    return top, dx, dW, db


def pair(params, name, default):
    if f"{name}_h" in params:
        return params[f"{name}_h"], params[f"{name}_w"]
    v = params.get(name, default)
    v = v if isinstance(v, list) else [v]
    return (v[0], v[-1])


CASES = [  # (bottom shape, params)
    ((2, 3, 6, 5), {"num_output": 4, "kernel_size": 3}),
    ((2, 3, 7, 7), {"num_output": 2, "kernel_size": 3, "stride": 2, "pad": 1}),
    ((1, 2, 8, 7), {"num_output": 3, "kernel_size": 3, "dilation": 2, "pad": 2}),
    ((2, 4, 5, 6), {"num_output": 6, "kernel_size": 3, "group": 2, "pad": 1}),
    ((2, 6, 5, 5), {"num_output": 3, "kernel_size": 2, "group": 3, "stride": 2, "bias_term": False}),
    ((2, 2, 6, 7), {"num_output": 3, "kernel_h": 2, "kernel_w": 3, "stride_h": 1, "stride_w": 2,
                    "pad_h": 0, "pad_w": 1}),
    ((1, 2, 7, 4), {"num_output": 2, "kernel_size": [3, 2], "stride": [2, 1], "pad": [1, 0]}),
    ((2, 3, 4, 5), {"num_output": 5, "kernel_size": 1}),
    ((1, 2, 9, 9), {"num_output": 2, "kernel_size": 5, "pad": [2, 1], "stride": [3, 2],
                    "dilation": [1, 2]}),
    # wide enough for the batch-first internal layout, unpadded and padded
    ((2, 2, 3, 19), {"num_output": 3, "kernel_size": 3}),
    ((1, 4, 4, 20), {"num_output": 4, "kernel_size": 3, "pad": 1, "group": 2, "dilation": [1, 2]}),
    # 1x1 stride 1 unpadded, wide: the bottom is the columns (pointwise) on the CPU too
    ((2, 4, 3, 17), {"num_output": 6, "kernel_size": 1, "group": 2}),
    ((2, 3, 2, 16), {"num_output": 2, "kernel_size": 1, "dilation": 2, "bias_term": False}),
]


def run_case(shape, params, seed=0):
    rng = np.random.default_rng(seed)
    layer = build("Convolution", params, [shape])
    x = rng.normal(size=shape)
    io = run_forward(layer, [x.copy()], seed=seed)
    return layer, io, x, rng


@pytest.mark.parametrize("shape,params", CASES)
def test_matches_naive_reference(shape, params):
    layer, io, x, rng = run_case(shape, params)
    dy = rng.normal(size=layer.top_shapes[0])
    io.top_diff[0][...] = dy
    for buf in io.buf.values():  # per-call scratch: backward recomputes the columns
        buf[...] = np.nan
    layer.backward(io, CPU)
    b = io.params[1] if params.get("bias_term", True) else None
    top, dx, dW, db = ref_conv(x, io.params[0], b, dy, pair(params, "pad", 0), pair(params, "stride", 1),
                               pair(params, "dilation", 1), params.get("group", 1))
    assert layer.top_shapes[0] == top.shape
    np.testing.assert_allclose(io.top[0], top, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(io.param_diff[0], dW, rtol=1e-10, atol=1e-10)
    if b is not None:
        np.testing.assert_allclose(io.param_diff[1], db, rtol=1e-10, atol=1e-10)
    else:
        assert len(io.params) == 1


def test_both_internal_layouts_are_covered():
    assert {build("Convolution", p, [s]).batch_last for s, p in CASES} == {True, False}


@pytest.mark.parametrize("shape,params", [CASES[1], CASES[3], CASES[10]])
def test_second_forward_after_backward_is_unchanged(shape, params):
    """Backward reuses the scratch buffers; the next forward must not see that."""
    layer, io, x, rng = run_case(shape, params)
    first = io.top[0].copy()
    io.top_diff[0][...] = rng.normal(size=first.shape)
    layer.backward(io, CPU)
    layer.forward(io, CPU)
    np.testing.assert_array_equal(io.top[0], first)


def test_frozen_params_and_no_bottom_gradient():
    shape, params = CASES[1]
    layer, io, x, rng = run_case(shape, params)
    io.top_diff[0][...] = rng.normal(size=layer.top_shapes[0])
    full = make_io(layer, [x])
    layer.forward(full, CPU)
    full.top_diff[0][...] = io.top_diff[0]
    layer.backward(full, CPU)
    io.param_diff[0] = None
    io.bottom_diff[0] = None
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.param_diff[1], full.param_diff[1])


@pytest.mark.parametrize("shape,params", [
    ((2, 2, 5, 4), {"num_output": 3, "kernel_size": 3, "pad": 1, "stride": 2}),
    ((1, 4, 5, 5), {"num_output": 2, "kernel_size": 2, "group": 2, "dilation": 2}),
    ((1, 2, 3, 17), {"num_output": 2, "kernel_size": [2, 2], "pad": [0, 1],
                     "weight_filler": {"type": "gaussian", "std": 0.5}}),
])
def test_gradient_check(shape, params):
    layer = build("Convolution", params, [shape])
    check_gradients(layer, [np.random.default_rng(3).normal(size=shape)])


FUSED = StepContext(fused_relu=True)    # as the compiler decides when an in-place ReLU follows
ONLY = StepContext(forward_only=True)   # as it decides for a step with no backward
ONLY_FUSED = StepContext(forward_only=True, fused_relu=True)


# --- a fused ReLU (set by the compiler when an in-place ReLU follows) ----------------------------
def check_fused_relu(type_name, params, shape, seed=0):
    """With ``fused_relu`` the layer gives what it gives followed by an in-place ReLU: the top,
    the top gradient masked in place, and every gradient."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    plain = build(type_name, params, [shape])
    dy = rng.normal(size=plain.top_shapes[0])
    ref = make_io(plain, [x.copy()], seed=seed)
    plain.forward(ref, CPU)
    relu = build("ReLU", {}, plain.top_shapes)
    relu_io = make_io(relu, [ref.top[0]])
    relu_io.top, relu_io.bottom_diff = relu_io.bottom, [ref.top_diff[0]]
    relu_io.top_diff = relu_io.bottom_diff
    relu.forward(relu_io, CPU)
    ref.top_diff[0][...] = dy
    relu.backward(relu_io, CPU)
    plain.backward(ref, CPU)

    fused = build(type_name, params, [shape])
    io = make_io(fused, [x.copy()], seed=seed, ctx=FUSED)
    fused.forward(io, CPU)
    io.top_diff[0][...] = dy
    fused.backward(io, CPU)
    assert (ref.top[0] == 0).any() and (ref.top[0] > 0).any()
    for want, got in [(ref.top, io.top), (ref.top_diff, io.top_diff), (ref.bottom_diff, io.bottom_diff),
                      (ref.param_diff, io.param_diff)]:
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
    assert fused.reads_top(FUSED) and not plain.reads_top(StepContext())


@pytest.mark.parametrize("shape,params", CASES)
def test_fused_relu_is_the_layer_then_relu(shape, params):
    check_fused_relu("Convolution", params, shape)


@pytest.mark.parametrize("shape,params", [CASES[1], CASES[4], CASES[10]])
def test_gradient_check_with_fused_relu(shape, params):
    layer = build("Convolution", params, [shape])
    check_gradients(layer, [np.random.default_rng(4).normal(size=shape)], ctx=FUSED)


def test_float32_and_shapes_through_build():
    layer = build("Convolution", {"num_output": 20, "kernel_size": 5,
                                  "weight_filler": {"type": "xavier"}}, [(64, 1, 28, 28)])
    assert layer.top_shapes == [(64, 20, 24, 24)]
    assert [b.shape for b in layer.param_blobs()] == [(20, 1, 5, 5), (20,)]
    assert layer.flops() == 2 * 64 * 20 * 24 * 24 * 25 + 64 * 20 * 24 * 24
    assert layer.backward_reads_bottom  # to recompute the columns, which are per-call scratch
    x = np.random.default_rng(0).normal(size=(64, 1, 28, 28)).astype(np.float32)
    io = run_forward(layer, [x])
    assert io.top[0].dtype == np.float32
    ref = run_forward(layer, [x.astype(np.float64)], params=[p.astype(np.float64) for p in io.params])
    np.testing.assert_allclose(io.top[0], ref.top[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("params,shape,message", [
    ({"num_output": 4, "kernel_size": 3, "group": 2}, (1, 3, 5, 5),
     "3 input channels are not divisible by group 2"),
    ({"num_output": 5, "kernel_size": 3, "group": 2}, (1, 4, 5, 5), "num_output 5 is not divisible by group 2"),
    ({"num_output": 1, "kernel_size": 5}, (1, 1, 3, 3), r"kernel 5x5 is larger than the padded input 3x3"),
    ({"num_output": 1, "kernel_size": 3, "dilation": 2}, (1, 1, 4, 9),
     r"kernel 3x3 \(dilated to 5x5\) is larger than the padded input 4x9"),
    ({"num_output": 1, "kernel_size": 5, "pad": 1}, (1, 1, 2, 9), "larger than the padded input 4x11"),
    ({"num_output": 1}, (1, 1, 5, 5), r"kernel_size \(or kernel_h and kernel_w\) is required"),
    ({"num_output": 1, "kernel_size": 3}, (1, 5, 5), "expects a 4-D NCHW bottom, got 3-D"),
    ({"num_output": 1, "kernel_size": 3, "axis": 2}, (1, 1, 5, 5), "only axis 1"),
    ({"num_output": 1, "kernel_size": 3, "kernel_h": 3, "kernel_w": 3}, (1, 1, 5, 5), "give either kernel or"),
    ({"num_output": 1, "kernel_h": 3}, (1, 1, 5, 5), "kernel_h and kernel_w go together"),
    ({"num_output": 1, "kernel_size": 3, "pad": [1, 1, 1]}, (1, 1, 5, 5), "pad: expects 1 or 2 values"),
])
def test_config_errors(params, shape, message):
    with pytest.raises(ConfigError, match=message) as info:
        build("Convolution", params, [shape], name="conv9")
    assert "layer 'conv9' (Convolution)" in str(info.value)


def test_params_validation():
    with pytest.raises(ValidationError):
        build("Convolution", {"num_output": 0, "kernel_size": 3}, [(1, 1, 5, 5)])
    for bad in ({"kernel_size": -1}, {"kernel_size": 0}, {"kernel_size": 3, "stride": 0},
                {"kernel_size": 3, "dilation": 0}, {"kernel_h": 0, "kernel_w": 3}):
        with pytest.raises(ValidationError):
            build("Convolution", {"num_output": 1, **bad}, [(1, 1, 5, 5)])
    layer = build("Convolution", {"num_output": 1, "kernel_size": 3, "force_nd_im2col": True,
                                  "engine": "CAFFE"}, [(1, 1, 5, 5)])
    assert layer.top_shapes == [(1, 1, 3, 3)]


# --- forward-only: the batch in chunks of images, buffers for one chunk --------------------------
def per_image_bytes(layer):
    """Forward-only scratch per image: float32 columns, plus the staging output for the small
    (batch-last) images; image-major columns for large ones need none but hold a row of ones."""
    g, k = layer.p.group, layer.ckk
    rows = g * k + layer.p.num_output if layer.batch_last else g * (k + layer.p.bias_term)
    return rows * layer.Ho * layer.Wo * 4


def forward_only(params, shape, images_per_chunk=None):
    """A layer to run with ``ONLY`` (forward-only), its budget cut to ``images_per_chunk`` images."""
    layer = build("Convolution", params, [shape])
    if images_per_chunk is not None:
        layer.forward_only_bytes = per_image_bytes(layer) * images_per_chunk
    return layer


def buffer_bytes(layer, names=None, ctx=ONLY):
    return sum(int(np.prod(b.shape)) * np.dtype(b.dtype).itemsize
               for k, b in layer.buffers(ctx).items() if names is None or k in names)


ONLY_CASES = CASES + [  # image-major without a bias, strided
    ((1, 6, 3, 36), {"num_output": 3, "kernel_size": 2, "group": 3, "stride": 2, "bias_term": False}),
]


@pytest.mark.parametrize("shape,params", ONLY_CASES)
@pytest.mark.parametrize("images_per_chunk,chunk", [(1, 1), (2, 2), (3, 3), (4, 4), (None, 7)])
def test_forward_only_matches_the_full_forward(shape, params, images_per_chunk, chunk):
    """7 images in chunks of 1, 2 (2+2+2+1), 3 (3+3+1), 4 (4+3) and all 7 at once."""
    shape = (7,) + shape[1:]
    x = np.random.default_rng(5).normal(size=shape)
    full = run_forward(build("Convolution", params, [shape]), [x], seed=2)
    layer = forward_only(params, shape, images_per_chunk)
    assert layer.chunk(ONLY) == chunk
    io = run_forward(layer, [x], seed=2, ctx=ONLY)
    np.testing.assert_allclose(io.top[0], full.top[0], rtol=1e-12, atol=1e-12)
    layer.forward(io, CPU)  # the scratch left by the last chunk does not leak into the next pass
    np.testing.assert_allclose(io.top[0], full.top[0], rtol=1e-12, atol=1e-12)


def test_forward_only_covers_both_layouts_groups_and_padding():
    layers = [forward_only(p, s) for s, p in ONLY_CASES]
    for batch_last in (True, False):
        same = [l for l in layers if l.batch_last == batch_last]
        assert any(l.p.group > 1 and l.padded for l in same)
        assert any(l.p.group == 1 and not l.padded for l in same)
        assert any(l.dh > 1 or l.dw > 1 for l in same)
        assert any(not l.p.bias_term for l in same)


@pytest.mark.parametrize("shape,params,layouts", [
    ((10, 4, 5, 20), {"num_output": 6, "kernel_size": 3, "pad": 1, "group": 2},
     lambda n: {"col": (n, 2, 19, 5 * 20), "weight_bias": (2, 3, 19), "pad": (4, n, 7, 22)}),
    ((10, 4, 5, 12), {"num_output": 6, "kernel_size": 3, "pad": 1, "group": 2},
     lambda n: {"col": (2, 18, n * 5 * 12), "out": (6, n * 5 * 12), "pad": (4, 7, 14, n)}),
])
def test_forward_only_buffers_hold_one_chunk(shape, params, layouts):
    layer = build("Convolution", params, [shape])
    whole = {k: b.shape for k, b in layer.buffers().items()}
    assert whole["col"] == (2, 18, 10 * layer.Ho * layer.Wo) and "out" in whole
    per_image = per_image_bytes(layer)
    for budget, chunk in [(per_image * 3, 3), (per_image * 4, 4), (per_image * 5 - 1, 4),
                          (per_image * 10, 10), (1 << 30, 10), (1, 1)]:
        layer.forward_only_bytes = budget
        assert layer.chunk(ONLY) == chunk
        assert {k: b.shape for k, b in layer.buffers(ONLY).items()} == layouts(chunk)
        assert buffer_bytes(layer, {"col", "out"}) <= max(budget, per_image)
        assert buffer_bytes(layer, {"weight_bias"}) in (0, 2 * 3 * 19 * 4)


@pytest.mark.parametrize("N", [64, 100, 256])
@pytest.mark.parametrize("C,H,cout", [(1, 28, 20), (20, 12, 50)])
def test_forward_only_lenet_convs_stay_within_2_mib(N, C, H, cout):
    params = {"num_output": cout, "kernel_size": 5, "weight_filler": {"type": "xavier"}}
    layer = forward_only(params, (N, C, H, H))
    pad = buffer_bytes(layer, {"pad"})
    assert buffer_bytes(layer) <= (2 << 20) + pad
    assert pad <= buffer_bytes(layer, {"col"})  # the padded copy is chunked too
    chunks = -(-N // layer.chunk(ONLY))
    assert chunks == -(-N // ((2 << 20) // per_image_bytes(layer)))  # as few as the budget allows
    trained = build("Convolution", params, [(N, C, H, H)])
    assert buffer_bytes(trained, ctx=StepContext()) >= 2 * buffer_bytes(layer)


@pytest.mark.parametrize("shape,params", [
    ((64, 1, 28, 28), {"num_output": 20, "kernel_size": 5}),    # LeNet conv1: image-major
    ((64, 20, 12, 12), {"num_output": 50, "kernel_size": 5}),   # LeNet conv2: batch-last
])
def test_forward_only_float32_lenet(shape, params):
    params = dict(params, weight_filler={"type": "xavier"})
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    full = run_forward(build("Convolution", params, [shape]), [x])
    layer = forward_only(params, shape)
    assert 1 < layer.chunk(ONLY) < 64
    io = run_forward(layer, [x], ctx=ONLY)
    assert io.top[0].dtype == np.float32
    np.testing.assert_allclose(io.top[0], full.top[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,params", [CASES[3], CASES[10]])  # batch-last, image-major
def test_forward_only_with_fused_relu(shape, params):
    shape = (5,) + shape[1:]
    x = np.random.default_rng(6).normal(size=shape)
    full = run_forward(build("Convolution", params, [shape]), [x], seed=2)
    layer = forward_only(params, shape, images_per_chunk=2)
    io = run_forward(layer, [x], seed=2, ctx=ONLY_FUSED)
    np.testing.assert_allclose(io.top[0], np.maximum(full.top[0], 0), rtol=1e-12, atol=1e-12)


# --- CPU/GPU parity ----------------------------------------------------------------------------
# Groups, pad/stride/dilation, rectangular and 1x1 kernels, no bias; both internal layouts; the
# top gradient masked in place by a fused ReLU.
GPU_CASES = [Case("Convolution", params, [normal(shape, 1)], ctx=StepContext(fused_relu=fused),
                  compare=("top_diff",)) for shape, params in CASES for fused in (False, True)]
globals().update(layer_tests(GPU_CASES))


def assert_close(device, got, want, what):
    err = relative_error(device.to_host(got), want)
    assert err <= 1e-4, f"{what}: relative error {err:.3g}"


@pytest.mark.parametrize("fused_relu", [False, True])
@pytest.mark.parametrize("shape,params", ONLY_CASES)
@pytest.mark.parametrize("images_per_chunk", [1, 3, None])
def test_gpu_forward_only_chunks(gpu_device, shape, params, images_per_chunk, fused_relu):
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
def test_gpu_frozen_no_bottom_gradient_and_bottom_unread(gpu_device, shape, params):
    """Backward with the weight frozen and no bottom gradient; the bottom and the scratch
    poisoned after the forward (with the weight frozen backward needs no columns)."""
    layer = build("Convolution", params, [shape])
    x = np.random.default_rng(3).normal(size=shape)
    check_parity(layer, [x], gpu_device, propagate_down=[False], ctx=FUSED)
    cpu, gpu = check_parity(layer, [x], gpu_device, backward=False, ctx=FUSED)
    frozen_weight_backward(layer, cpu, gpu, gpu_device)
    assert_close(gpu_device, gpu.bottom_diff[0], cpu.bottom_diff[0], "bottom_diff")
    assert_close(gpu_device, gpu.param_diff[1], cpu.param_diff[1], "bias diff")


def check_replayed_graph(layer, shape, device, chunked=False):
    """Forward and backward captured once and replayed on new inputs: every piece of work goes
    through the backend, none is done while capturing."""
    ctx = StepContext(forward_only=chunked, fused_relu=True)
    rng = np.random.default_rng(6)
    cpu, gpu = check_parity(layer, [rng.normal(size=shape)], device, backward=not chunked, ctx=ctx)

    def step():
        layer.forward(gpu, device)
        if not chunked:
            layer.backward(gpu, device)
    graph = device.backend.capture(step)
    x = rng.normal(size=shape).astype(np.float32)
    cpu.bottom[0][...] = x
    device.upload(gpu.bottom[0], x)
    for i, d in enumerate(cpu.top_diff):
        d[...] = rng.normal(size=d.shape)
        device.upload(gpu.top_diff[i], d)
    for arr in gpu.top + [d for d in gpu.bottom_diff + gpu.param_diff if d is not None]:
        device.fill(arr, np.nan)
    graph.replay()
    layer.forward(cpu, CPU)
    assert_close(device, gpu.top[0], cpu.top[0], "top")
    if not chunked:
        layer.backward(cpu, CPU)
        for what, want, got in [("bottom_diff", cpu.bottom_diff, gpu.bottom_diff),
                                ("param_diff", cpu.param_diff, gpu.param_diff)]:
            for w, g in zip(want, got):
                assert_close(device, g, w, what)


@pytest.mark.parametrize("shape,params,chunked", [
    (*CASES[3], False),
    (*CASES[10], False),
    ((5,) + CASES[3][0][1:], CASES[3][1], True),
    ((5,) + CASES[10][0][1:], CASES[10][1], True),
])
def test_gpu_replayed_graph_matches_the_cpu(gpu_device, shape, params, chunked):
    layer = forward_only(params, shape, 2) if chunked else build("Convolution", params, [shape])
    check_replayed_graph(layer, shape, gpu_device, chunked)
