"""Dropout: inverted scaling in TRAIN with a mask from the net's generator, identity in TEST."""

import numpy as np
import pytest
from pydantic import ValidationError

from layer_check import build, check_gradients, run_forward
from trainnet.runtime.device import CPU


def test_train_matches_reference_mask():
    x = np.random.default_rng(5).normal(size=(4, 6))
    layer = build("Dropout", {"dropout_ratio": 0.3}, [x.shape])
    io = run_forward(layer, [x], seed=7)
    keep = np.random.default_rng(7).random(x.shape) >= 0.3  # the same draws as the layer
    expected = np.array([[x[i, j] / 0.7 if keep[i, j] else 0.0 for j in range(6)]
                         for i in range(4)])
    np.testing.assert_allclose(io.top[0], expected)
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], keep / 0.7)


def test_keep_fraction_and_mean():
    x = np.ones((200, 500), np.float32)
    io = run_forward(build("Dropout", {"dropout_ratio": 0.25}, [x.shape]), [x])
    assert np.mean(io.top[0] > 0) == pytest.approx(0.75, abs=0.01)
    assert float(io.top[0].mean()) == pytest.approx(1.0, abs=0.02)


def test_in_place():
    x = np.random.default_rng(0).normal(size=(3, 5))
    layer = build("Dropout", {}, [x.shape])
    ref = run_forward(layer, [x.copy()]).top[0]
    io = run_forward(layer, [x])
    io.top[0], io.rng = io.bottom[0], np.random.default_rng(0)
    layer.forward(io, CPU)
    np.testing.assert_array_equal(x, ref)


def test_test_phase_is_identity():
    x = np.random.default_rng(0).normal(size=(3, 5))
    layer = build("Dropout", {"dropout_ratio": 0.9}, [x.shape], phase="TEST")
    assert layer.buffers() == {}
    np.testing.assert_array_equal(run_forward(layer, [x]).top[0], x)


def test_no_scale_train():
    x = np.ones((2, 3))
    train = run_forward(build("Dropout", {"scale_train": False}, [x.shape]), [x]).top[0]
    assert set(np.unique(train)) <= {0.0, 1.0}
    test = run_forward(build("Dropout", {"scale_train": False}, [x.shape], phase="TEST"), [x])
    np.testing.assert_allclose(test.top[0], 0.5)


def test_gradients():
    check_gradients(build("Dropout", {"dropout_ratio": 0.4}, [(3, 4)]),
                    [np.random.default_rng(1).normal(size=(3, 4))])


def test_ratio_must_be_below_one():
    with pytest.raises(ValidationError, match="less than 1"):
        build("Dropout", {"dropout_ratio": 1.0}, [(2, 2)])
