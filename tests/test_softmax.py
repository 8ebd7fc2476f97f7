"""Softmax against a per-position loop, and its gradient."""

import math

import numpy as np
import pytest

from layer_check import build, check_gradients, run_forward
from trainnet.errors import ConfigError


def naive_softmax(x, axis):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:-1]):
        e = [math.exp(v - max(x[idx])) for v in x[idx]]
        out[idx] = [v / sum(e) for v in e]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("shape,axis", [((4, 5), 1), ((2, 3, 4, 2), 1), ((2, 3, 4), -1),
                                        ((3, 4), 0)])
def test_forward_matches_loop(shape, axis):
    x = np.random.default_rng(0).normal(size=shape) * 5
    layer = build("Softmax", {"axis": axis}, [shape])
    io = run_forward(layer, [x])
    np.testing.assert_allclose(io.top[0], naive_softmax(x, axis), rtol=1e-12)


def test_large_inputs_are_stable():
    x = np.array([[1000.0, 1000.0, -1000.0]], np.float32)
    io = run_forward(build("Softmax", {}, [x.shape]), [x])
    np.testing.assert_allclose(io.top[0], [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("shape,axis", [((3, 4), 1), ((2, 3, 2, 2), 1), ((2, 3, 4), 2)])
def test_gradients(shape, axis):
    x = np.random.default_rng(1).normal(size=shape)
    check_gradients(build("Softmax", {"axis": axis}, [shape]), [x])


def test_bad_axis():
    with pytest.raises(ConfigError, match=r"axis 2 is out of range for a 2-D bottom \(4, 5\)"):
        build("Softmax", {"axis": 2}, [(4, 5)])
