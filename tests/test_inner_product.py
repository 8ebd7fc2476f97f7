"""InnerProduct against a per-element loop, its gradients, axis and transpose."""

import numpy as np
import pytest

from layer_check import build, check_gradients, run_forward
from test_convolution import FUSED, ONLY_FUSED, check_fused_relu
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext


def naive_inner_product(x, w, b, axis, transpose):
    x = np.asarray(x, np.float64)
    lead = x.shape[:axis]
    rows = x.reshape(int(np.prod(lead)), -1)
    W = w.T if transpose else w  # (N, K)
    out = np.zeros((rows.shape[0], W.shape[0]))
    for m in range(rows.shape[0]):
        for n in range(W.shape[0]):
            out[m, n] = sum(rows[m, k] * W[n, k] for k in range(rows.shape[1])) + (b[n] if b is not None else 0)
    return out.reshape(lead + (W.shape[0],))


@pytest.mark.parametrize("shape, params", [
    ((4, 6), {"num_output": 3}),
    ((2, 3, 2, 2), {"num_output": 5}),
    ((2, 3, 4), {"num_output": 2, "axis": 2}),
    ((2, 3, 4), {"num_output": 2, "axis": -1, "bias_term": False}),
    ((3, 5), {"num_output": 4, "transpose": True}),
])
def test_forward_matches_loop(shape, params):
    x = np.random.default_rng(0).normal(size=shape)
    layer = build("InnerProduct", params, [shape])
    io = run_forward(layer, [x])
    axis = params.get("axis", 1) % len(shape)
    bias = io.params[1] if params.get("bias_term", True) else None
    expected = naive_inner_product(x, io.params[0], bias, axis, params.get("transpose", False))
    np.testing.assert_allclose(io.top[0], expected, rtol=1e-12)


@pytest.mark.parametrize("shape, params", [
    ((3, 4), {"num_output": 2}),
    ((2, 2, 2, 2), {"num_output": 3, "weight_filler": {"type": "gaussian", "std": 0.5}}),
    ((2, 3, 4), {"num_output": 2, "axis": 2, "transpose": True}),
])
def test_gradients(shape, params):
    check_gradients(build("InnerProduct", params, [shape]), [np.random.default_rng(1).normal(size=shape)])


def test_parameter_shapes_follow_caffe():
    layer = build("InnerProduct", {"num_output": 500}, [(64, 50, 4, 4)])
    assert [b.shape for b in layer.param_blobs()] == [(500, 800), (500,)]
    assert layer.top_shapes == [(64, 500)]
    layer = build("InnerProduct", {"num_output": 10, "transpose": True, "bias_term": False}, [(8, 20)])
    assert [b.shape for b in layer.param_blobs()] == [(20, 10)]
    assert layer.flops() == 2 * 8 * 20 * 10


def test_bad_axis():
    with pytest.raises(ConfigError, match=r"layer 'layer' \(InnerProduct\): axis 3 is out of range"):
        build("InnerProduct", {"num_output": 2, "axis": 3}, [(2, 3, 4)])


FUSED_CASES = [
    ((4, 6), {"num_output": 3}),
    ((2, 3, 4), {"num_output": 5, "axis": 2, "transpose": True}),
    ((2, 3, 2, 2), {"num_output": 4, "bias_term": False}),
]


@pytest.mark.parametrize("shape, params", FUSED_CASES)
def test_fused_relu_is_the_layer_then_relu(shape, params):
    check_fused_relu("InnerProduct", params, shape)


@pytest.mark.parametrize("shape, params", FUSED_CASES)
def test_gradients_with_fused_relu(shape, params):
    layer = build("InnerProduct", params, [shape])
    check_gradients(layer, [np.random.default_rng(2).normal(size=shape)], ctx=FUSED)


def test_fused_relu_needs_a_mask_only_with_a_backward():
    layer = build("InnerProduct", {"num_output": 3}, [(4, 6)])
    assert layer.buffers() == {} and not layer.reads_top(StepContext())
    assert layer.buffers(FUSED)["positive"].shape == (4, 3) and layer.reads_top(FUSED)
    assert layer.buffers(ONLY_FUSED) == {} and layer.buffers(StepContext(gpu=True, fused_relu=True)) == {}
