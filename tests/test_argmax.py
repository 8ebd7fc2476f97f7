"""ArgMax: Caffe's top shapes, and its order of (value, index) pairs, ties included."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_check import build, run_forward
from trainnet.errors import ConfigError


def ranked(values):
    """Caffe's std::partial_sort of (value, index) pairs with std::greater."""
    return sorted(((float(v), j) for j, v in enumerate(values)), reverse=True)


def argmax_reference(x, top_k, out_max_val, axis):
    if axis is None:
        n = x.shape[0]
        out = np.zeros((n, 2 if out_max_val else 1, top_k))
        for i in range(n):
            best = ranked(x[i].reshape(-1))[:top_k]
            out[i, 0] = [j for _, j in best]
            if out_max_val:
                out[i, 1] = [v for v, _ in best]
        return out.reshape(out.shape + (1,) * (x.ndim - 3))
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1] + (top_k,))
    for idx in np.ndindex(*moved.shape[:-1]):
        best = ranked(moved[idx])[:top_k]
        out[idx] = [v for v, _ in best] if out_max_val else [j for _, j in best]
    return np.moveaxis(out, -1, axis)


CASES = [((3, 4), {}), ((3, 4), {"top_k": 3}), ((3, 4), {"out_max_val": True, "top_k": 2}),
         ((2, 3, 2, 2), {"top_k": 5}), ((2, 3, 2, 2), {"out_max_val": True}),
         ((2, 5, 3), {"axis": 1, "top_k": 2}), ((2, 5, 3), {"axis": -1, "out_max_val": True}),
         ((4, 5), {"axis": 0, "top_k": 4, "out_max_val": True}), ((6,), {"top_k": 1})]


@pytest.mark.parametrize("shape,params", CASES)
def test_forward_matches_sorted_pairs(shape, params):
    # few distinct values: many ties
    x = np.random.default_rng(0).integers(-2, 3, size=shape).astype(np.float32)
    layer = build("ArgMax", params, [shape])
    io = run_forward(layer, [x])
    want = argmax_reference(x, params.get("top_k", 1), params.get("out_max_val", False),
                            params.get("axis"))
    assert layer.top_shapes == [want.shape]
    np.testing.assert_array_equal(io.top[0], want)


def test_caffe_top_shapes():
    shape = lambda params, bottom: build("ArgMax", params, [bottom]).top_shapes[0]  # noqa: E731
    assert shape({}, (10, 3, 4, 5)) == (10, 1, 1, 1)
    assert shape({"out_max_val": True, "top_k": 3}, (10, 3, 4, 5)) == (10, 2, 3, 1)
    assert shape({}, (10, 7)) == (10, 1, 1)
    assert shape({"axis": 1, "top_k": 2}, (10, 3, 4, 5)) == (10, 2, 4, 5)
    assert shape({"axis": -1, "out_max_val": True}, (10, 3, 4, 5)) == (10, 3, 4, 1)


def test_ties_go_to_the_larger_index():
    io = run_forward(build("ArgMax", {"top_k": 3, "out_max_val": True}, [(1, 5)]),
                     [np.array([[1.0, 3.0, 1.0, 3.0, 2.0]])])
    np.testing.assert_array_equal(io.top[0], [[[3, 1, 4], [3, 3, 2]]])


def test_infinities_are_ordered_values():
    x = np.array([[-np.inf, 0.0, -np.inf, np.inf]], np.float32)
    io = run_forward(build("ArgMax", {"top_k": 4}, [x.shape]), [x])
    np.testing.assert_array_equal(io.top[0], [[[3, 1, 2, 0]]])


def test_no_backward():
    layer = build("ArgMax", {}, [(2, 3)])
    assert not layer.has_backward


@pytest.mark.parametrize("shape,params", CASES + [((64, 300), {"top_k": 7, "out_max_val": True})])
def test_gpu_parity_is_exact(shape, params, gpu_device):
    x = np.random.default_rng(1).integers(-3, 4, size=shape).astype(np.float32)
    check_parity(build("ArgMax", params, [shape]), [x], gpu_device, rtol=0)
    y = np.random.default_rng(2).normal(size=shape)
    check_parity(build("ArgMax", params, [shape]), [y], gpu_device, rtol=0)


def test_errors():
    with pytest.raises(ConfigError, match=r"top_k 5 exceeds the 4 values along axis 1 in the "
                                          r"bottom \(2, 4\)"):
        build("ArgMax", {"top_k": 5, "axis": 1}, [(2, 4)])
    with pytest.raises(ConfigError, match=r"top_k 13 exceeds the 12 values of each item in the "
                                          r"bottom \(2, 3, 4\)"):
        build("ArgMax", {"top_k": 13}, [(2, 3, 4)])
    with pytest.raises(ConfigError, match="axis 2 is out of range"):
        build("ArgMax", {"axis": 2}, [(2, 4)])
    with pytest.raises(ValidationError):
        build("ArgMax", {"top_k": 0}, [(2, 4)])
