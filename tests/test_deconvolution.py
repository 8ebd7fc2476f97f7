"""Deconvolution against a scatter-form loop reference of Caffe's definition, the gradient
checker, FCN's bilinear 2x upsampling, CPU/GPU parity, a whole net, and the config errors."""

import numpy as np
import pytest

from gpu_check import check_parity, frozen_weight_backward, relative_error
from layer_check import build, check_gradients, run_forward
from test_convolution import pair
from trainnet.errors import ConfigError
from trainnet.layers.fillers import fill
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net


def ref_deconv(x, w, b, dy, pad, stride, dilation, group):
    """Caffe's deconvolution written out element by element (each bottom cell adds weight * x
    to its window of the top): the top, and the gradients of ``sum(dy * top)`` with respect to
    the bottom, the weight and the bias."""
    N, C, H, W = x.shape
    _, per_group, kh, kw = w.shape
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    Ho, Wo = sh * (H - 1) + dh * (kh - 1) + 1 - 2 * ph, sw * (W - 1) + dw * (kw - 1) + 1 - 2 * pw
    cout, cg = per_group * group, C // group
    top = np.zeros((N, cout, Ho, Wo)) + (0 if b is None else b.reshape(1, -1, 1, 1))
    dx, dW = np.zeros_like(x), np.zeros_like(w)
    for n in range(N):
        for c in range(C):
            for o in range(per_group):
                co = c // cg * per_group + o
                for y in range(H):
                    for v in range(W):
                        for i in range(kh):
                            oy = y * sh - ph + i * dh
                            for j in range(kw):
                                ox = v * sw - pw + j * dw
                                if 0 <= oy < Ho and 0 <= ox < Wo:
                                    top[n, co, oy, ox] += w[c, o, i, j] * x[n, c, y, v]
                                    dx[n, c, y, v] += w[c, o, i, j] * dy[n, co, oy, ox]
                                    dW[c, o, i, j] += x[n, c, y, v] * dy[n, co, oy, ox]
    return top, dx, dW, dy.sum(axis=(0, 2, 3))


CASES = [  # (bottom shape, params)
    ((2, 3, 4, 5), {"num_output": 4, "kernel_size": 3}),
    ((2, 2, 3, 4), {"num_output": 3, "kernel_size": 4, "stride": 2, "pad": 1}),
    ((1, 2, 4, 3), {"num_output": 2, "kernel_size": 3, "dilation": 2, "pad": 1}),
    ((2, 4, 3, 3), {"num_output": 6, "kernel_size": 3, "group": 2, "stride": 2}),
    # one bottom channel per group (FCN's upsampling): the forward GEMM is an outer product
    ((2, 3, 3, 4), {"num_output": 3, "kernel_size": 4, "group": 3, "stride": 2, "pad": 1,
                    "bias_term": False}),
    ((1, 2, 3, 4), {"num_output": 2, "kernel_h": 2, "kernel_w": 3, "stride_h": 1, "stride_w": 2,
                    "pad_h": 1, "pad_w": 0}),
    ((2, 2, 1, 2), {"num_output": 3, "kernel_size": 3, "pad": 1, "stride": 2}),  # a tap falls out
    ((2, 3, 2, 2), {"num_output": 2, "kernel_size": 1, "stride": 2}),  # gaps: bias only
    ((1, 2, 3, 4), {"num_output": 2, "kernel_size": [3, 2], "pad": [1, 0], "stride": [2, 3],
                    "dilation": [1, 2]}),
]


def run_case(shape, params, seed=0):
    rng = np.random.default_rng(seed)
    layer = build("Deconvolution", params, [shape])
    x = rng.normal(size=shape)
    io = run_forward(layer, [x.copy()], seed=seed)
    return layer, io, x, rng


@pytest.mark.parametrize("shape,params", CASES)
def test_matches_scatter_reference(shape, params):
    layer, io, x, rng = run_case(shape, params)
    dy = rng.normal(size=layer.top_shapes[0])
    io.top_diff[0][...] = dy
    for buf in io.buf.values():  # per-call scratch: backward must not read the forward's
        buf[...] = np.nan
    layer.backward(io, CPU)
    b = io.params[1] if params.get("bias_term", True) else None
    top, dx, dW, db = ref_deconv(x, io.params[0], b, dy, pair(params, "pad", 0),
                                 pair(params, "stride", 1), pair(params, "dilation", 1),
                                 params.get("group", 1))
    assert layer.top_shapes[0] == top.shape
    np.testing.assert_allclose(io.top[0], top, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(io.param_diff[0], dW, rtol=1e-10, atol=1e-10)
    if b is not None:
        np.testing.assert_allclose(io.param_diff[1], db, rtol=1e-10, atol=1e-10)
    else:
        assert len(io.params) == 1


@pytest.mark.parametrize("shape,params", [CASES[1], CASES[3], CASES[6], CASES[8]])
def test_gradient_check(shape, params):
    layer = build("Deconvolution", params, [shape])
    check_gradients(layer, [np.random.default_rng(3).normal(size=shape)])


def test_second_forward_after_backward_is_unchanged():
    layer, io, _, rng = run_case(*CASES[3])
    first = io.top[0].copy()
    io.top_diff[0][...] = rng.normal(size=first.shape)
    layer.backward(io, CPU)
    layer.forward(io, CPU)
    np.testing.assert_array_equal(io.top[0], first)


def test_shapes_blobs_and_flops():
    layer = build("Deconvolution", {"num_output": 6, "kernel_size": 4, "stride": 2, "pad": 1,
                                    "group": 2}, [(8, 4, 5, 7)])
    assert layer.top_shapes == [(8, 6, 10, 14)]
    assert [b.shape for b in layer.param_blobs()] == [(4, 3, 4, 4), (6,)]
    assert layer.param_blobs()[1].filler.type == "constant" and layer.param_blobs()[1].filler.value == 0
    assert layer.flops() == 2 * 8 * 5 * 7 * 4 * 3 * 16 + 8 * 6 * 10 * 14
    assert layer.backward_reads_bottom  # bottom_t is per-call scratch
    assert layer.caffe_params == {"convolution_param": None}


def test_bilinear_2x_upsampling_by_hand():
    """FCN's upsampling: group = channels, kernel 4, stride 2, pad 1, the bilinear filler.  Each
    axis interpolates with weights 3/4 and 1/4 between neighbours (half-pixel centres), the
    border cells keep only the 3/4 of their one neighbour."""
    params = {"num_output": 2, "group": 2, "kernel_size": 4, "stride": 2, "pad": 1,
              "bias_term": False, "weight_filler": {"type": "bilinear"}}
    layer = build("Deconvolution", params, [(1, 2, 2, 2)])
    w = np.empty(layer.param_blobs()[0].shape)
    fill(w, layer.param_blobs()[0].filler, np.random.default_rng(0))
    np.testing.assert_array_equal(w[0, 0, 0], [1 / 16, 3 / 16, 3 / 16, 1 / 16])
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 8.0], [0.0, 0.0]]]])
    io = run_forward(layer, [x], params=[w])
    # rows of channel 0 interpolated: [1, 2] -> [.75, 1.25, 1.75, 1.5], [3, 4] -> [2.25, 3.25,
    # 3.75, 3]; then the columns the same way
    want0 = np.array([[0.5625, 0.9375, 1.3125, 1.125],
                      [1.125, 1.75, 2.25, 1.875],
                      [1.875, 2.75, 3.25, 2.625],
                      [1.6875, 2.4375, 2.8125, 2.25]])
    want1 = np.outer([0.75, 0.75, 0.25, 0], [0, 2, 6, 6])  # one 8 in the top-right corner
    np.testing.assert_allclose(io.top[0][0, 0], want0, rtol=1e-12)
    np.testing.assert_allclose(io.top[0][0, 1], want1, rtol=1e-12)


@pytest.mark.parametrize("params,shape,message", [
    ({"num_output": 4, "kernel_size": 3, "group": 2}, (1, 3, 5, 5),
     "3 input channels are not divisible by group 2"),
    ({"num_output": 5, "kernel_size": 3, "group": 2}, (1, 4, 5, 5), "num_output 5 is not divisible by group 2"),
    ({"num_output": 1, "kernel_size": 3, "pad": 3}, (1, 1, 2, 5),
     r"the top would be -2x1: pad 3x3 is too large for a 2x5 bottom"),
    ({"num_output": 1}, (1, 1, 5, 5), r"kernel_size \(or kernel_h and kernel_w\) is required"),
    ({"num_output": 1, "kernel_size": 3}, (1, 5, 5), "expects a 4-D NCHW bottom, got 3-D"),
    ({"num_output": 1, "kernel_size": 3, "axis": 2}, (1, 1, 5, 5), "only axis 1"),
    ({"num_output": 1, "kernel_h": 3}, (1, 1, 5, 5), "kernel_h and kernel_w go together"),
])
def test_config_errors(params, shape, message):
    with pytest.raises(ConfigError, match=message) as info:
        build("Deconvolution", params, [shape], name="up")
    assert "layer 'up' (Deconvolution)" in str(info.value)


# --- GPU ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,params", CASES)
def test_gpu_parity(gpu_device, shape, params):
    layer = build("Deconvolution", params, [shape])
    check_parity(layer, [np.random.default_rng(1).normal(size=shape)], gpu_device)


@pytest.mark.parametrize("shape,params", [CASES[1], CASES[4]])
def test_gpu_frozen_weight_and_no_bottom_gradient(gpu_device, shape, params):
    layer = build("Deconvolution", params, [shape])
    x = np.random.default_rng(2).normal(size=shape)
    check_parity(layer, [x], gpu_device, propagate_down=[False])
    cpu, gpu = check_parity(layer, [x], gpu_device, backward=False)
    frozen_weight_backward(layer, cpu, gpu, gpu_device)
    assert relative_error(gpu_device.to_host(gpu.bottom_diff[0]), cpu.bottom_diff[0]) < 1e-4
    if len(cpu.params) > 1:
        assert relative_error(gpu_device.to_host(gpu.param_diff[1]), cpu.param_diff[1]) < 1e-4


# --- a whole net: depthwise convolution, fused ReLU, frozen bilinear upsampling, deconvolution ----
NET = """\
name: upsampling
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [2, 4, 6, 6]}, {dim: [2]}]}
  - name: dw
    type: Convolution
    bottom: data
    top: dw
    num_output: 4
    group: 4
    kernel_size: 3
    stride: 2
    pad: 1
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: constant, value: 0.1}
  - {name: relu, type: ReLU, bottom: dw, top: dw}
  - name: up
    type: Deconvolution
    bottom: dw
    top: up
    param: {lr_mult: 0}
    num_output: 4
    group: 4
    kernel_size: 4
    stride: 2
    pad: 1
    bias_term: false
    weight_filler: {type: bilinear}
  - name: deconv
    type: Deconvolution
    bottom: up
    top: deconv
    num_output: 3
    kernel_size: 3
    stride: 2
    group: 1
    weight_filler: {type: gaussian, std: 0.3}
    bias_filler: {type: constant, value: 0.2}
  - name: ip
    type: InnerProduct
    bottom: deconv
    top: ip
    num_output: 3
    weight_filler: {type: gaussian, std: 0.05}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def run_net(device, gpu: bool):
    """One forward and backward of NET on ``device``: the loss and every parameter gradient."""
    plan = compile_net(load_net_text(NET, "up.yaml"), "TRAIN", gpu=gpu)
    net = Net(plan, device, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    net.set_input("data", rng.normal(size=(2, 4, 6, 6)).astype(np.float32))
    net.set_input("label", np.array([0, 2], np.float32))
    loss = net.forward_backward()
    return plan, loss, net.params.named(device.to_host(net.params.diff))


def test_whole_net_on_the_cpu_and_the_gpu(gpu_device):
    plan, loss, grads = run_net(CPU, gpu=False)
    gpu_plan, gpu_loss, gpu_grads = run_net(gpu_device, gpu=True)
    assert plan.step("dw").fused == ["relu"] and plan.step("up").frozen == [True]
    assert plan.blobs["deconv"].shape == (2, 3, 13, 13) and np.isfinite(loss)
    assert not gpu_plan.step("dw").buffers  # the depthwise path needs no columns
    assert gpu_loss == pytest.approx(loss, rel=1e-5)
    assert not grads["up.0"].any()  # frozen: never written, left at 0
    for key, want in grads.items():
            assert relative_error(gpu_grads[key], want) < 1e-4, key
