"""Convolution against a naive loop-by-loop reference of Caffe's definition, plus the gradient
checker and the config errors."""

import numpy as np
import pytest
from pydantic import ValidationError

from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
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
    io.bottom[0][...] = np.nan  # backward must not read the bottom
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


def test_float32_and_shapes_through_build():
    layer = build("Convolution", {"num_output": 20, "kernel_size": 5,
                                  "weight_filler": {"type": "xavier"}}, [(64, 1, 28, 28)])
    assert layer.top_shapes == [(64, 20, 24, 24)]
    assert [b.shape for b in layer.param_blobs()] == [(20, 1, 5, 5), (20,)]
    assert layer.flops() == 2 * 64 * 20 * 24 * 24 * 25 + 64 * 20 * 24 * 24
    assert not layer.backward_reads_bottom
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
