"""EuclideanLoss against a loop reference; gradients to both bottoms; CPU/GPU parity."""

import numpy as np
import pytest

from layer_cases import Case, layer_tests
from layer_check import build, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.runtime.device import CPU


def naive_loss(a, b):
    """sum (a - b)^2 / (2N), item by item."""
    n = a.shape[0]
    total = 0.0
    for x, y in zip(a.reshape(-1), b.reshape(-1)):
        total += (float(x) - float(y)) ** 2
    return total / n / 2


def data(shape_a, shape_b=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape_a), rng.normal(size=shape_b or shape_a)


def loss(bottoms, blobs, params):
    return naive_loss(*bottoms)


DOWN = [[True, True], [True, False], [False, True]]
CASES = (
    [Case("EuclideanLoss", {}, data(shape_a, shape_b), ref=loss, rtol=1e-12, gpu=False)
     for shape_a, shape_b in [((4, 3), None), ((2, 3, 2, 2), (2, 12))]]
    + [Case("EuclideanLoss", {}, data((3, 2, 2), (3, 4), seed=1), grad=True, propagate_down=down,
            gpu=False) for down in DOWN]
    + [Case("EuclideanLoss", {}, data((4, 3, 5), (4, 15), seed=2), propagate_down=down)
       for down in DOWN]
)
globals().update(layer_tests(CASES))


def test_float32():
    a, b = data((5, 4))
    io = run_forward(build("EuclideanLoss", {}, [a.shape, b.shape]),
                     [a.astype(np.float32), b.astype(np.float32)])
    assert io.top[0].dtype == np.float32
    assert float(io.top[0]) == pytest.approx(naive_loss(a, b), rel=1e-5)


def test_loss_weight_and_signs():
    a, b = data((3, 4))
    layer = build("EuclideanLoss", {}, [a.shape, b.shape])
    io = make_io(layer, [a, b])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 2.5
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], (a - b) * 2.5 / 3)
    np.testing.assert_allclose(io.bottom_diff[1], -(a - b) * 2.5 / 3)


@pytest.mark.parametrize("shapes,match", [
    ([(4, 3), (4, 4)], r"bottoms 0 \(4, 3\) and 1 \(4, 4\) must have the same count"),
    ([(4, 3), (3, 4)], r"must have the same first dimension"),
])
def test_shape_errors(shapes, match):
    with pytest.raises(ConfigError, match=match):
        build("EuclideanLoss", {}, shapes)
