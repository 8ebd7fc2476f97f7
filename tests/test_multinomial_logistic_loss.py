"""MultinomialLogisticLoss against a loop reference, its log floor, gradients, CPU/GPU parity."""

import math

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError, TrainnetError
from trainnet.runtime.device import CPU


def naive_loss(p, label):
    """-sum log(max(p[label], 1e-20)) / N, item by item."""
    n = p.shape[0]
    rows = p.reshape(n, -1)
    return -sum(math.log(max(rows[i, int(label.reshape(-1)[i])], 1e-20)) for i in range(n)) / n


def data(shape, seed=0):
    rng = np.random.default_rng(seed)
    e = np.exp(rng.normal(size=(shape[0], int(np.prod(shape[1:])))))
    p = (e / e.sum(1, keepdims=True)).reshape(shape)
    return p, rng.integers(0, p[0].size, size=shape[0]).astype(np.float64)


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 2, 1)])
def test_forward(shape):
    p, label = data(shape)
    io = run_forward(build("MultinomialLogisticLoss", {}, [p.shape, label.shape]), [p, label])
    assert io.top[0].shape == ()
    assert float(io.top[0]) == pytest.approx(naive_loss(p, label), rel=1e-12)


def test_zero_probability_hits_the_log_floor():
    p = np.array([[0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    layer = build("MultinomialLogisticLoss", {}, [p.shape, (2,)])
    io = run_forward(layer, [p, np.array([0.0, 1.0], np.float32)])
    assert float(io.top[0]) == pytest.approx((-math.log(1e-20) - math.log(0.5)) / 2, rel=1e-6)
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], [[-1 / 1e-20 / 2, 0], [0, -1 / 0.5 / 2]], rtol=1e-6)


def test_gradients():
    p, label = data((3, 4), seed=1)
    layer = build("MultinomialLogisticLoss", {}, [p.shape, (3, 1, 1, 1)])
    check_gradients(layer, [p, label.reshape(3, 1, 1, 1)], check_bottoms=[True, False])


def test_loss_weight_scales_gradient():
    p, label = data((3, 4))
    layer = build("MultinomialLogisticLoss", {}, [p.shape, label.shape])
    io = make_io(layer, [p, label], propagate_down=[True, False])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 2.0
    layer.backward(io, CPU)
    want = np.zeros_like(p)
    want[np.arange(3), label.astype(int)] = -2.0 / 3 / p[np.arange(3), label.astype(int)]
    np.testing.assert_allclose(io.bottom_diff[0], want)
    assert io.bottom_diff[1] is None


def test_gpu_parity(gpu_device):
    p, label = data((6, 3, 2), seed=2)
    p[0, 0, 0] = 0.0
    label[0] = 0  # one label on a zero probability: the floor on both
    layer = build("MultinomialLogisticLoss", {}, [p.shape, label.shape])
    check_parity(layer, [p, label], gpu_device, propagate_down=[True, False])


def test_gpu_bad_label_is_nan(gpu_device):
    p, _ = data((2, 3))
    layer = build("MultinomialLogisticLoss", {}, [p.shape, (2,)])
    cpu = make_io(layer, [p.astype(np.float32), np.array([-1.0, 0.0], np.float32)])
    gpu = gpu_io(layer, gpu_device, cpu, 0)
    layer.forward(gpu, gpu_device)
    assert np.isnan(gpu_device.to_host(gpu.top[0]))


def test_label_out_of_range_names_layer_and_value():
    layer = build("MultinomialLogisticLoss", {}, [(2, 3), (2,)], name="mlr")
    with pytest.raises(TrainnetError, match=r"layer 'mlr'.*label value -1 .*outside \[0, 3\)"):
        run_forward(layer, [np.full((2, 3), 1 / 3), np.array([0.0, -1.0])])


def test_label_shape_mismatch():
    with pytest.raises(ConfigError, match=r"bottom 1 \(label\) expects 8 values .*got shape \(4,\)"):
        build("MultinomialLogisticLoss", {}, [(8, 10), (4,)])
