"""InnerProduct against a per-element loop, its gradients, axis and transpose; CPU/GPU parity
with a fused ReLU, frozen parameters and a replayed graph."""

import numpy as np
import pytest

from gpu_check import check_parity
from layer_cases import Case, layer_tests, normal
from layer_check import build
from test_convolution import FUSED, ONLY_FUSED, assert_close, check_fused_relu, check_replayed_graph
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU


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


def inner_product(bottoms, blobs, params):
    x = bottoms[0]
    bias = blobs[1] if params.get("bias_term", True) else None
    return naive_inner_product(x, blobs[0], bias, params.get("axis", 1) % x.ndim,
                               params.get("transpose", False))


FUSED_CASES = [
    ((4, 6), {"num_output": 3}),
    ((2, 3, 4), {"num_output": 5, "axis": 2, "transpose": True}),
    ((2, 3, 2, 2), {"num_output": 4, "bias_term": False}),
]
CPU_CASES = (
    [Case("InnerProduct", params, [normal(shape)], ref=inner_product, rtol=1e-12, gpu=False)
     for shape, params in [((4, 6), {"num_output": 3}), ((2, 3, 2, 2), {"num_output": 5}),
                           ((2, 3, 4), {"num_output": 2, "axis": 2}),
                           ((2, 3, 4), {"num_output": 2, "axis": -1, "bias_term": False}),
                           ((3, 5), {"num_output": 4, "transpose": True})]]
    + [Case("InnerProduct", params, [normal(shape, 1)], grad=True, gpu=False)
       for shape, params in [((3, 4), {"num_output": 2}),
                             ((2, 2, 2, 2), {"num_output": 3,
                                             "weight_filler": {"type": "gaussian", "std": 0.5}}),
                             ((2, 3, 4), {"num_output": 2, "axis": 2, "transpose": True})]]
    + [Case("InnerProduct", params, [normal(shape, 2)], grad=True, ctx=FUSED, gpu=False)
       for shape, params in FUSED_CASES]
)


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


@pytest.mark.parametrize("shape, params", FUSED_CASES)
def test_fused_relu_is_the_layer_then_relu(shape, params):
    check_fused_relu("InnerProduct", params, shape)


def test_fused_relu_needs_a_mask_only_with_a_backward():
    layer = build("InnerProduct", {"num_output": 3}, [(4, 6)])
    assert layer.buffers() == {} and not layer.reads_top(StepContext())
    assert layer.buffers(FUSED)["positive"].shape == (4, 3) and layer.reads_top(FUSED)
    assert layer.buffers(ONLY_FUSED) == {} and layer.buffers(StepContext(gpu=True, fused_relu=True)) == {}


# --- CPU/GPU parity ----------------------------------------------------------------------------
IP_CASES = [
    ((4, 6), {"num_output": 3}),
    ((2, 3, 2, 2), {"num_output": 5}),
    ((2, 3, 4), {"num_output": 2, "axis": 2}),
    ((2, 3, 4), {"num_output": 2, "axis": -1, "bias_term": False}),
    ((3, 5), {"num_output": 4, "transpose": True}),
    ((2, 3, 4), {"num_output": 3, "axis": 1, "transpose": True, "bias_term": False}),
]
GPU_CASES = [Case("InnerProduct", params, [normal(shape, 4)], ctx=StepContext(fused_relu=fused),
                  compare=("top_diff",)) for shape, params in IP_CASES for fused in (False, True)]
globals().update(layer_tests(CPU_CASES + GPU_CASES))


@pytest.mark.parametrize("shape,params", [IP_CASES[1], IP_CASES[4]])
def test_gpu_frozen_and_no_bottom_gradient(gpu_device, shape, params):
    layer = build("InnerProduct", params, [shape])
    x = np.random.default_rng(5).normal(size=shape)
    check_parity(layer, [x], gpu_device, propagate_down=[False], ctx=FUSED)
    cpu, gpu = check_parity(layer, [x], gpu_device, backward=False, ctx=FUSED)
    for io in (cpu, gpu):
        io.param_diff[0] = None
    layer.backward(cpu, CPU)
    layer.backward(gpu, gpu_device)
    assert_close(gpu_device, gpu.bottom_diff[0], cpu.bottom_diff[0], "bottom_diff")
    if len(cpu.params) > 1:
        assert_close(gpu_device, gpu.param_diff[1], cpu.param_diff[1], "bias diff")


def test_gpu_replayed_graph_matches_the_cpu(gpu_device):
    shape, params = IP_CASES[2]
    check_replayed_graph(build("InnerProduct", params, [shape]), shape, gpu_device)
