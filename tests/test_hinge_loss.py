"""HingeLoss against Caffe's definition item by item (L1 and L2), gradients, CPU/GPU parity."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity, gpu_io
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError, TrainnetError
from trainnet.runtime.device import CPU


def naive_loss(x, label, norm="L1"):
    """t = +1 at the label, -1 elsewhere; sum max(0, 1 - t x) (squared for L2) / N."""
    n = x.shape[0]
    rows = x.reshape(n, -1)
    total = 0.0
    for i in range(n):
        for j in range(rows.shape[1]):
            t = 1.0 if j == int(label.reshape(-1)[i]) else -1.0
            m = max(0.0, 1.0 - t * rows[i, j])
            total += m if norm == "L1" else m * m
    return total / n


def data(shape, seed=0):
    """Scores kept 0.05 away from the kinks at +-1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 1.5
    near = np.abs(np.abs(x) - 1) < 0.05
    x[near] += 0.2
    dim = int(np.prod(shape[1:]))
    return x, rng.integers(0, dim, size=shape[0]).astype(np.float64)


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 2, 2)])
def test_forward(norm, shape):
    x, label = data(shape)
    io = run_forward(build("HingeLoss", {"norm": norm}, [x.shape, label.shape]), [x, label])
    assert io.top[0].shape == ()
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label, norm), rel=1e-12)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_gradients(norm):
    x, label = data((3, 4, 2), seed=1)
    layer = build("HingeLoss", {"norm": norm}, [x.shape, (3, 1)])
    check_gradients(layer, [x, label.reshape(3, 1)], check_bottoms=[True, False])


def test_l1_gradient_is_caffes_sign():
    x = np.array([[2.0, -2.0, 0.5], [0.0, 0.5, -3.0]])
    label = np.array([0.0, 2.0])
    layer = build("HingeLoss", {}, [x.shape, label.shape])
    io = make_io(layer, [x, label], propagate_down=[True, False])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 3.0
    layer.backward(io, CPU)
    # row 0: label 0 with 1 - 2 < 0 -> 0; -2 -> 1 + -2 < 0 -> 0; 0.5 -> +1
    # row 1: 0 -> +1; 0.5 -> +1; label 2 with 1 + 3 > 0 -> -1
    np.testing.assert_allclose(io.bottom_diff[0], np.array([[0, 0, 1], [1, 1, -1]]) * 3 / 2)
    assert io.bottom_diff[1] is None


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_gpu_parity(gpu_device, norm):
    x, label = data((5, 3, 4), seed=2)
    layer = build("HingeLoss", {"norm": norm}, [x.shape, label.shape])
    check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])


def test_gpu_bad_label_is_nan(gpu_device):
    x, label = data((2, 3))
    layer = build("HingeLoss", {}, [x.shape, label.shape])
    cpu = make_io(layer, [x.astype(np.float32), np.array([0.0, 3.0], np.float32)])
    gpu = gpu_io(layer, gpu_device, cpu, 0)
    layer.forward(gpu, gpu_device)
    assert np.isnan(gpu_device.to_host(gpu.top[0]))


def test_label_out_of_range_names_layer_and_value():
    layer = build("HingeLoss", {}, [(2, 3), (2,)], name="hinge")
    with pytest.raises(TrainnetError, match=r"layer 'hinge'.*label value 3 .*outside \[0, 3\)"):
        run_forward(layer, [np.zeros((2, 3)), np.array([0.0, 3.0])])


def test_errors():
    with pytest.raises(ConfigError, match=r"bottom 1 \(label\) expects 4 values .*got shape \(4, 2\)"):
        build("HingeLoss", {}, [(4, 3), (4, 2)])
    with pytest.raises(ValidationError, match="norm"):
        build("HingeLoss", {"norm": "L3"}, [(4, 3), (4,)])
