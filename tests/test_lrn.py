"""LRN, both regions, against element loops written from Caffe's definitions (WITHIN_CHANNEL as
Caffe's chain of square, AVE pooling, power and product, with the pooling's clipped divisor),
gradients, forward-only, CPU/GPU parity, user errors, and a small net on the CPU and the GPU."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity, relative_error
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.layers.base import StepContext
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net


def across_reference(x, n, alpha, beta, k, dy):
    """Caffe's LRN ACROSS_CHANNELS forward and CrossChannelBackward, element by element."""
    N, C, H, W = x.shape
    half = (n - 1) // 2
    scale, y, dx = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for i, c, h, w in np.ndindex(x.shape):
        window = [x[i, j, h, w] ** 2 for j in range(c - half, c + half + 1) if 0 <= j < C]
        scale[i, c, h, w] = k + alpha / n * sum(window)
        y[i, c, h, w] = x[i, c, h, w] * scale[i, c, h, w] ** -beta
    for i, c, h, w in np.ndindex(x.shape):
        # the windows holding channel c are those of channels c - half .. c + half
        ratios = [dy[i, j, h, w] * y[i, j, h, w] / scale[i, j, h, w]
                  for j in range(c - half, c + half + 1) if 0 <= j < C]
        dx[i, c, h, w] = (dy[i, c, h, w] * scale[i, c, h, w] ** -beta
                          - 2 * alpha * beta / n * x[i, c, h, w] * sum(ratios))
    return y, dx


def ave_divisor(out: int, size: int, kernel: int, pad: int) -> int:
    """Caffe's AVE pooling window size (stride 1) along one axis: clipped to size + pad."""
    start = out - pad
    return min(start + kernel, size + pad) - start


def within_reference(x, n, alpha, beta, dy):
    """Caffe's WITHIN_CHANNEL sub-layers, forward then backward through each, per element."""
    N, C, H, W = x.shape
    pad = (n - 1) // 2
    sq = x ** 2
    avg, pool_size = np.zeros_like(x), np.zeros((H, W))
    for i, c, h, w in np.ndindex(x.shape):  # AVE pooling, kernel n, pad, stride 1
        pool_size[h, w] = ave_divisor(h, H, n, pad) * ave_divisor(w, W, n, pad)
        total = sum(sq[i, c, a, b] for a in range(h - pad, h + pad + 1)
                    for b in range(w - pad, w + pad + 1) if 0 <= a < H and 0 <= b < W)
        avg[i, c, h, w] = total / pool_size[h, w]
    base = 1 + alpha * avg                      # power layer: (1 + alpha * avg)^-beta
    power = base ** -beta
    y = x * power                               # product with the bottom
    d_power = dy * x
    d_avg = d_power * -beta * alpha * base ** (-beta - 1)
    d_sq = np.zeros_like(x)
    for i, c, h, w in np.ndindex(x.shape):      # AVE pooling backward
        for a in range(h - pad, h + pad + 1):
            for b in range(w - pad, w + pad + 1):
                if 0 <= a < H and 0 <= b < W:
                    d_sq[i, c, a, b] += d_avg[i, c, h, w] / pool_size[h, w]
    dx = dy * power + 2 * x * d_sq              # product's and square's gradients, summed by the split
    return y, dx, pool_size


def forward_backward(layer, x, dy):
    io = make_io(layer, [x])
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    return io


ACROSS = [
    ((2, 4, 3, 3), {}),
    ((2, 7, 2, 3), {"local_size": 3, "alpha": 2.0, "beta": 0.5, "k": 2.0}),
    ((1, 2, 3, 2), {"local_size": 5, "alpha": 0.5, "k": 0.5}),   # window wider than the channels
    ((1, 3, 2, 2), {"local_size": 1, "beta": 1.5}),
]
WITHIN = [
    ((2, 2, 5, 5), {"local_size": 3, "alpha": 2.0}),
    ((1, 2, 7, 7), {"local_size": 5, "alpha": 3.0, "beta": 0.6}),
    ((1, 1, 5, 5), {"local_size": 7, "alpha": 4.0}),              # window wider than the image
    ((1, 2, 3, 6), {"local_size": 3, "beta": 1.25}),
]


@pytest.mark.parametrize("shape, params", ACROSS)
def test_across_channels_matches_loops(shape, params):
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    layer = build("LRN", params, [shape])
    io = forward_backward(layer, x, dy)
    p = layer.p
    y, dx = across_reference(x, p.local_size, p.alpha, p.beta, p.k, dy)
    np.testing.assert_allclose(io.top[0], y, rtol=1e-12)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, params", WITHIN)
def test_within_channel_matches_caffes_sub_layers(shape, params):
    rng = np.random.default_rng(1)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    params = {**params, "norm_region": "WITHIN_CHANNEL"}
    layer = build("LRN", params, [shape])
    io = forward_backward(layer, x, dy)
    p = layer.p
    y, dx, pool_size = within_reference(x, p.local_size, p.alpha, p.beta, dy)
    # the border windows hang over the image, yet Caffe's clipped divisor is the full n^2
    assert (pool_size == p.local_size ** 2).all()
    np.testing.assert_allclose(io.top[0], y, rtol=1e-12)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, params", ACROSS[:2] + [(s, {**p, "norm_region": "WITHIN_CHANNEL"})
                                                        for s, p in WITHIN[:2]])
def test_gradients(shape, params):
    check_gradients(build("LRN", params, [shape]), [np.random.default_rng(2).normal(size=shape)])


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_forward_only_keeps_no_scale(region):
    x = np.random.default_rng(3).normal(size=(2, 3, 5, 5)).astype(np.float32)
    full = build("LRN", {"norm_region": region, "local_size": 3}, [x.shape])
    only = build("LRN", {"norm_region": region, "local_size": 3}, [x.shape])
    ctx = StepContext(forward_only=True)
    assert set(only.buffers(ctx)) == {"work"} and "scale" in full.buffers()
    assert only.buffers(StepContext(forward_only=True, gpu=True)) == {}
    np.testing.assert_array_equal(run_forward(only, [x], ctx=ctx).top[0], run_forward(full, [x]).top[0])


# --- GPU parity ------------------------------------------------------------------------------------
GPU_CASES = ACROSS + [(s, {**p, "norm_region": "WITHIN_CHANNEL"}) for s, p in WITHIN] + [
    ((3, 8, 6, 7), {"local_size": 5, "alpha": 1e-2}),
    ((2, 3, 9, 8), {"local_size": 3, "alpha": 5e-2, "norm_region": "WITHIN_CHANNEL"}),
]


@pytest.mark.parametrize("shape, params", GPU_CASES)
def test_gpu_parity(gpu_device, shape, params):
    layer = build("LRN", params, [shape])
    check_parity(layer, [np.random.default_rng(4).normal(size=shape)], gpu_device)


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_gpu_parity_forward_only(gpu_device, region):
    layer = build("LRN", {"norm_region": region}, [(2, 6, 5, 5)])
    check_parity(layer, [np.random.default_rng(5).normal(size=(2, 6, 5, 5))], gpu_device,
                 backward=False, ctx=StepContext(forward_only=True))


# --- user errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("params, shape, message", [
    ({"local_size": 4}, (1, 3, 4, 4), "local_size 4: LRN only supports odd values"),
    ({"norm_region": "WITHIN_CHANNEL", "k": 2.0}, (1, 3, 4, 4), "k 2.0: WITHIN_CHANNEL has no k"),
    ({}, (2, 3, 4), r"expects a 4-D NCHW bottom, got 3-D \(2, 3, 4\)"),
])
def test_user_errors(params, shape, message):
    with pytest.raises(ConfigError, match=message):
        build("LRN", params, [shape])


@pytest.mark.parametrize("params", [{"local_size": 0}, {"norm_region": "ACROSS"}, {"engine": "X"}])
def test_bad_values_are_refused(params):
    with pytest.raises(ValidationError):
        build("LRN", params, [(1, 3, 4, 4)])


# --- in a net --------------------------------------------------------------------------------------
NET = """\
name: lrn
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [2, 3, 7, 7]}, {dim: [2]}]}
  - {name: conv, type: Convolution, bottom: data, top: conv, num_output: 5, kernel_size: 3,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: norm1, type: LRN, bottom: conv, top: norm1, local_size: 3, alpha: 0.5}
  - {name: norm2, type: LRN, bottom: norm1, top: norm2, local_size: 3, alpha: 2.0,
     norm_region: WITHIN_CHANNEL}
  - {name: ip, type: InnerProduct, bottom: norm2, top: ip, num_output: 3,
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def run_net(device):
    plan = compile_net(load_net_text(NET, "lrn.yaml"), "TRAIN", gpu=device.is_gpu)
    net = Net(plan, device, rng=np.random.default_rng(0))
    net.set_input("data", np.random.default_rng(1).normal(size=(2, 3, 7, 7)).astype(np.float32))
    net.set_input("label", np.array([1, 2], np.float32))
    loss = net.forward_backward()
    return loss, {k: device.to_host(v) for k, v in net.params.named(net.params.diff).items()}


def test_a_net_trains_through_both_regions_on_the_cpu_and_the_gpu(gpu_device):
    cpu_loss, cpu_grads = run_net(CPU)
    gpu_loss, gpu_grads = run_net(gpu_device)
    assert np.isfinite(cpu_loss) and gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    for key, want in cpu_grads.items():
        assert np.abs(want).sum() > 0 and relative_error(gpu_grads[key], want) < 1e-4, key
