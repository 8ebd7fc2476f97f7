"""Slice: cuts a bottom along an axis like np.split; backward joins the gradients."""

from types import SimpleNamespace

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io
from layer_check import check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.layers.base import layer_class
from trainnet.runtime.device import CPU


def with_tops(params, shape, n_tops):
    """A Slice built as the plan builds it, from a config naming ``n_tops`` tops."""
    cls = layer_class("Slice")
    common = SimpleNamespace(top=[f"t{i}" for i in range(n_tops)])
    return cls("slice", cls.Params.model_validate(params), "TRAIN", [shape], common=common)


@pytest.mark.parametrize("shape,params,n_tops,axis,points", [
    ((2, 6, 3), {}, 3, 1, [2, 4]),
    ((2, 6, 3), {"slice_point": [1, 5]}, 3, 1, [1, 5]),
    ((4, 3), {"axis": 0, "slice_point": 3}, 2, 0, [3]),
    ((2, 3, 4), {"axis": -1}, 2, 2, [2]),
    ((2, 3, 4), {"slice_dim": 2, "slice_point": [1]}, 2, 2, [1]),
    ((2, 3), {}, 1, 1, []),
])
def test_forward_matches_numpy_split(shape, params, n_tops, axis, points):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    io = run_forward(with_tops(params, shape, n_tops), [x])
    want = np.split(x, points, axis=axis)
    assert len(io.top) == len(want)
    for got, ref in zip(io.top, want):
        np.testing.assert_array_equal(got, ref)


def test_gradients():
    x = np.random.default_rng(1).normal(size=(2, 5, 2))
    check_gradients(with_tops({"slice_point": [1, 3]}, x.shape, 3), [x])


@pytest.mark.parametrize("shape,params,n_tops", [
    ((2, 6, 3), {}, 3),
    ((2, 6, 3), {"slice_point": [1, 5]}, 3),
    ((5, 3), {"axis": 0, "slice_point": [4]}, 2),
    ((2, 3, 4), {"axis": -1, "slice_point": [1, 2, 3]}, 4),
])
def test_gpu_parity_is_exact(shape, params, n_tops, gpu_device):
    x = np.random.default_rng(2).normal(size=shape)
    check_parity(with_tops(params, shape, n_tops), [x], gpu_device, rtol=0)


def test_a_missing_top_gradient_counts_as_zero(gpu_device):
    layer = with_tops({"slice_point": [1]}, (2, 3), 2)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    cpu = make_io(layer, [x])
    cpu.top_diff = [None, np.ones((2, 2), np.float32)]
    gpu = gpu_io(layer, gpu_device, make_io(layer, [x]), 0)
    gpu.top_diff[0] = None
    gpu_device.fill(gpu.top_diff[1], 1.0)
    layer.backward(cpu, CPU)
    layer.backward(gpu, gpu_device)
    want = np.array([[0, 1, 1], [0, 1, 1]], np.float32)
    np.testing.assert_array_equal(cpu.bottom_diff[0], want)
    np.testing.assert_array_equal(gpu_device.to_host(gpu.bottom_diff[0]), want)


def test_errors():
    with pytest.raises(ConfigError, match=r"3 tops do not divide axis 1 of the bottom \(2, 4\) "
                                          r"evenly \(4\); give slice_point"):
        with_tops({}, (2, 4), 3)
    with pytest.raises(ConfigError, match="slice_point: 1 points for 3 tops"):
        with_tops({"slice_point": [2]}, (2, 4), 3)
    with pytest.raises(ConfigError, match=r"slice_point \[2, 2\] must increase strictly within "
                                          r"\(0, 4\)"):
        with_tops({"slice_point": [2, 2]}, (2, 4), 3)
    with pytest.raises(ConfigError, match=r"slice_point \[4\] must increase"):
        with_tops({"slice_point": [4]}, (2, 4), 2)
    with pytest.raises(ConfigError, match="give either axis or slice_dim, not both"):
        with_tops({"axis": 0, "slice_dim": 0}, (2, 4), 2)
    with pytest.raises(ConfigError, match="axis -3 is out of range"):
        with_tops({"axis": -3}, (2, 4), 2)
