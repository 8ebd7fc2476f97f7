"""MVN against row loops written from Caffe's forward and backward, gradients, CPU/GPU parity,
user errors, and a small net on the CPU and the GPU."""

import math

import numpy as np
import pytest

from gpu_check import check_parity, relative_error
from layer_check import build, check_gradients, make_io
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net


def reference(x, dy, normalize_variance=True, across_channels=False, eps=1e-9):
    """Caffe's MVN, one row (an (n, c), or an n across channels) at a time: the top and
    Caffe's bottom gradient."""
    rows = x.shape[0] if across_channels else x.shape[0] * x.shape[1]
    xr, dyr = x.reshape(rows, -1), dy.reshape(rows, -1)
    y, dx = np.zeros_like(xr), np.zeros_like(xr)
    for r in range(rows):
        d = xr.shape[1]
        mean = sum(xr[r]) / d
        centred = [v - mean for v in xr[r]]
        if not normalize_variance:
            y[r] = centred
            dx[r] = [g - sum(dyr[r]) / d for g in dyr[r]]
            continue
        s = math.sqrt(sum(v * v for v in centred) / d) + eps  # eps after the root
        y[r] = [v / s for v in centred]
        ydy, dy_sum = sum(y[r] * dyr[r]), sum(dyr[r])
        dx[r] = [(dyr[r][j] - (y[r][j] * ydy + dy_sum) / d) / s for j in range(d)]
    return y.reshape(x.shape), dx.reshape(x.shape)


CASES = [
    ((2, 3, 4, 5), {}),
    ((2, 3, 4, 5), {"across_channels": True}),
    ((2, 3, 4, 5), {"normalize_variance": False}),
    ((2, 3, 4, 5), {"normalize_variance": False, "across_channels": True}),
    ((3, 2, 7), {"eps": 0.1}),                      # a large eps: Caffe's backward keeps its form
    ((4, 6), {"across_channels": True, "eps": 1e-3}),
    ((5,), {"across_channels": True}),
]


@pytest.mark.parametrize("shape, params", CASES)
def test_forward_and_backward_match_loops(shape, params):
    rng = np.random.default_rng(0)
    x, dy = rng.normal(2.0, 3.0, size=shape), rng.normal(size=shape)
    layer = build("MVN", params, [shape])
    io = make_io(layer, [x])
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    y, dx = reference(x, dy, **params)
    np.testing.assert_allclose(io.top[0], y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, params", [c for c in CASES if "eps" not in c[1]])
def test_gradients(shape, params):
    """With Caffe's tiny eps its backward is the gradient."""
    check_gradients(build("MVN", params, [shape]), [np.random.default_rng(1).normal(size=shape)])


def test_a_constant_row_becomes_zeros():
    x = np.full((1, 2, 3, 3), 5.0, np.float32)
    layer = build("MVN", {}, [x.shape])
    io = make_io(layer, [x])
    layer.forward(io, CPU)
    np.testing.assert_array_equal(io.top[0], 0)


def test_backward_reads_the_top_only_to_normalize_the_variance():
    assert build("MVN", {}, [(2, 3)]).backward_reads_top
    assert not build("MVN", {"normalize_variance": False}, [(2, 3)]).backward_reads_top
    assert not build("MVN", {}, [(2, 3)]).backward_reads_bottom


# --- GPU parity ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, params", CASES + [((2, 3, 40, 41), {}),
                                                   ((2, 3, 40, 41), {"across_channels": True})])
def test_gpu_parity(gpu_device, shape, params):
    rng = np.random.default_rng(2)
    check_parity(build("MVN", params, [shape]), [rng.normal(1.0, 2.0, size=shape)], gpu_device)


def test_gpu_parity_forward_only(gpu_device):
    layer = build("MVN", {}, [(2, 3, 5, 5)])
    check_parity(layer, [np.random.default_rng(3).normal(size=(2, 3, 5, 5))], gpu_device,
                 backward=False, ctx=StepContext(forward_only=True))


# --- user errors -----------------------------------------------------------------------------------
def test_a_1d_bottom_needs_across_channels():
    with pytest.raises(ConfigError, match=r"expects an \(N, C, ...\) bottom, got 1-D \(5,\)"):
        build("MVN", {}, [(5,)])


def test_bad_values_are_refused():
    from pydantic import ValidationError
    with pytest.raises(ValidationError):
        build("MVN", {"normalize_variance": "yes"}, [(2, 3)])


# --- in a net --------------------------------------------------------------------------------------
NET = """\
name: mvn
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [3, 2, 5, 5]}, {dim: [3]}]}
  - {name: conv, type: Convolution, bottom: data, top: conv, num_output: 4, kernel_size: 3,
     weight_filler: {type: gaussian, std: 0.3}, bias_filler: {type: constant, value: 1}}
  - {name: mvn, type: MVN, bottom: conv, top: mvn}
  - {name: mvn2, type: MVN, bottom: mvn, top: mvn2, across_channels: true, normalize_variance: false}
  - {name: ip, type: InnerProduct, bottom: mvn2, top: ip, num_output: 3,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def run_net(device):
    plan = compile_net(load_net_text(NET, "mvn.yaml"), "TRAIN", gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(0))
    net.set_input("data", np.random.default_rng(1).normal(size=(3, 2, 5, 5)).astype(np.float32))
    net.set_input("label", np.array([0, 1, 2], np.float32))
    loss = net.forward_backward()
    return loss, {k: device.to_host(v) for k, v in net.params.named(net.params.diff).items()}


def test_a_net_trains_through_mvn_on_the_cpu_and_the_gpu(gpu_device):
    cpu_loss, cpu_grads = run_net(CPU)
    gpu_loss, gpu_grads = run_net(gpu_device)
    assert np.isfinite(cpu_loss) and gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    for key, want in cpu_grads.items():
        if key == "conv.1":  # MVN removes any per-channel constant: no bias gradient
            continue
        assert np.abs(want).sum() > 0 and relative_error(gpu_grads[key], want) < 1e-4, key
