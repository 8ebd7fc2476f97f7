"""ContrastiveLoss against Hadsell et al.'s formula item by item (and Caffe's legacy form),
Caffe's gradients, CPU/GPU parity."""

import math

import numpy as np
import pytest

from gpu_check import check_parity
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.runtime.device import CPU


def naive_loss(a, b, y, margin=1.0, legacy=False):
    """sum [d^2 if similar else max(margin - d, 0)^2] / (2N); legacy: max(margin - d^2, 0)."""
    n = a.shape[0]
    a, b = a.reshape(n, -1), b.reshape(n, -1)
    total = 0.0
    for i in range(n):
        d2 = sum((float(p) - float(q)) ** 2 for p, q in zip(a[i], b[i]))
        if int(y.reshape(-1)[i]) != 0:
            total += d2
        elif legacy:
            total += max(margin - d2, 0.0)
        else:
            total += max(margin - math.sqrt(d2), 0.0) ** 2
    return total / n / 2


def caffe_gradient_a(a, b, y, margin, legacy, weight):
    """Caffe's Backward_cpu for bottom 0, pair by pair (with its 1e-4 guard)."""
    n = a.shape[0]
    out = np.zeros_like(a)
    for i in range(n):
        d = a[i] - b[i]
        alpha = weight / n
        if int(y[i]) != 0:
            out[i] = alpha * d
            continue
        d2 = float(d @ d)
        if legacy:
            mdist, beta = margin - d2, -alpha
        else:
            dist = math.sqrt(d2)
            mdist = margin - dist
            beta = -alpha * mdist / (dist + 1e-4)
        out[i] = beta * d if mdist > 0 else 0.0
    return out


def data(n=6, c=3, seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, c)) * scale, rng.normal(size=(n, c)) * scale
    y = (rng.uniform(size=n) < 0.5).astype(np.float64)
    y[:2] = [1.0, 0.0]
    return a, b, y


@pytest.mark.parametrize("margin,legacy", [(1.0, False), (2.0, False), (1.0, True), (3.0, True)])
def test_forward(margin, legacy):
    a, b, y = data()
    params = {"margin": margin, "legacy_version": legacy}
    io = run_forward(build("ContrastiveLoss", params, [a.shape, b.shape, y.shape]), [a, b, y])
    assert io.top[0].shape == ()
    assert float(io.top[0]) == pytest.approx(naive_loss(a, b, y, margin, legacy), rel=1e-12)


def test_features_with_trailing_axes_and_truncated_labels():
    a, b, y = data(4, 6)
    y = np.array([0.9, 2.0, -0.5, 1.0])  # truncated: 0, 2, 0, 1 -> dissimilar, similar, ...
    layer = build("ContrastiveLoss", {}, [(4, 6, 1, 1), (4, 6), (4, 1, 1, 1)])
    io = run_forward(layer, [a.reshape(4, 6, 1, 1), b, y.reshape(4, 1, 1, 1)])
    assert float(io.top[0]) == pytest.approx(naive_loss(a, b, y), rel=1e-12)


@pytest.mark.parametrize("margin,legacy", [(2.0, False), (2.0, True)])
@pytest.mark.parametrize("check", [[True, True, False], [False, True, False]])
def test_gradients(margin, legacy, check):
    """Caffe's dissimilar gradient divides by d + 1e-4, so it is within 1e-4/d of the true one."""
    a, b, y = data(seed=1)
    layer = build("ContrastiveLoss", {"margin": margin, "legacy_version": legacy},
                  [a.shape, b.shape, y.shape])
    check_gradients(layer, [a, b, y], check_bottoms=check, rtol=1e-3)


@pytest.mark.parametrize("legacy", [False, True])
def test_backward_is_caffes(legacy):
    a, b, y = data(8, 4, seed=2)
    layer = build("ContrastiveLoss", {"margin": 1.5, "legacy_version": legacy},
                  [a.shape, b.shape, y.shape])
    io = make_io(layer, [a, b, y], propagate_down=[True, True, False])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 0.7
    layer.backward(io, CPU)
    want = caffe_gradient_a(a, b, y, 1.5, legacy, 0.7)
    np.testing.assert_allclose(io.bottom_diff[0], want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(io.bottom_diff[1], -want, rtol=1e-12, atol=1e-15)
    assert io.bottom_diff[2] is None


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("propagate", [[True, True, False], [True, False, False], [False, True, False]])
def test_gpu_parity(gpu_device, legacy, propagate):
    a, b, y = data(9, 5, seed=3)
    layer = build("ContrastiveLoss", {"margin": 2.5, "legacy_version": legacy},
                  [a.shape, b.shape, y.shape])
    check_parity(layer, [a, b, y], gpu_device, propagate_down=propagate)


@pytest.mark.parametrize("shapes,match", [
    ([(4, 3), (4, 2), (4,)], r"bottoms 0 \(4, 3\) and 1 \(4, 2\) must hold the same number"),
    ([(4, 3), (4, 3), (3,)], r"bottom 2 \(similarity labels\) expects 4 values"),
])
def test_shape_errors(shapes, match):
    with pytest.raises(ConfigError, match=match):
        build("ContrastiveLoss", {}, shapes)
