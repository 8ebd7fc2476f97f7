"""Crop: bottom 0 cut to bottom 1's shape from ``axis`` on, at Caffe's offsets."""

import numpy as np
import pytest

from gpu_check import check_parity
from layer_check import build, check_gradients, run_forward
from trainnet.errors import ConfigError
from trainnet.runtime.device import CPU


def crop_loops(x, ref_shape, axis, offsets):
    """Element by element: top[i] = x[i + offset] with offsets on the axes from ``axis`` on."""
    n = x.ndim
    cropped = offsets * (n - axis) if len(offsets) == 1 else (offsets or [0] * (n - axis))
    offs = [0] * axis + cropped
    shape = x.shape[:axis] + tuple(ref_shape[axis:n])
    out = np.zeros(shape)
    for idx in np.ndindex(*shape):
        out[idx] = x[tuple(i + o for i, o in zip(idx, offs))]
    return out


CASES = [
    ((2, 3, 6, 7), (2, 3, 4, 4), {}, 2, []),
    ((2, 3, 6, 7), (1, 1, 4, 4), {"offset": 1}, 2, [1]),
    ((2, 3, 6, 7), (9, 9, 3, 5), {"offset": [2, 1]}, 2, [2, 1]),
    ((2, 5, 6, 7), (2, 2, 3, 7), {"axis": 1, "offset": [3, 1, 0]}, 1, [3, 1, 0]),
    ((4, 3, 5), (2, 3, 2), {"axis": 0, "offset": [1, 0, 2]}, 0, [1, 0, 2]),
    ((2, 3, 4, 5, 6), (2, 3, 2, 3, 4), {"axis": -3, "offset": 1}, 2, [1]),
    ((3, 4), (3, 2, 8), {"axis": -1, "offset": 2}, 1, [2]),  # bottom 1 may have more axes
]


@pytest.mark.parametrize("shape,ref,params,axis,offsets", CASES)
def test_forward_matches_loops(shape, ref, params, axis, offsets):
    x = np.random.default_rng(0).normal(size=shape)
    layer = build("Crop", params, [shape, ref])
    io = run_forward(layer, [x, np.zeros(ref)])
    np.testing.assert_array_equal(io.top[0], crop_loops(x, ref, axis, offsets))


def test_backward_is_zero_outside_the_crop():
    layer = build("Crop", {"offset": [1, 2]}, [(1, 1, 4, 5), (1, 1, 2, 2)])
    io = run_forward(layer, [np.ones((1, 1, 4, 5)), np.zeros((1, 1, 2, 2))])
    io.top_diff[0][...] = [[[[1, 2], [3, 4]]]]
    io.bottom_diff[0][...] = 7  # backward overwrites
    layer.backward(io, CPU)
    want = np.zeros((4, 5))
    want[1:3, 2:4] = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(io.bottom_diff[0][0, 0], want)


def test_gradients():
    rng = np.random.default_rng(1)
    layer = build("Crop", {"axis": 1, "offset": [1, 0, 2]}, [(2, 3, 2, 5), (2, 1, 2, 2)])
    check_gradients(layer, [rng.normal(size=(2, 3, 2, 5)), np.zeros((2, 1, 2, 2))],
                    check_bottoms=[True, False])
    assert layer.no_grad_bottoms == (1,)


@pytest.mark.parametrize("shape,ref,params,axis,offsets", CASES)
def test_gpu_parity_is_exact(shape, ref, params, axis, offsets, gpu_device):
    x = np.random.default_rng(2).normal(size=shape)
    check_parity(build("Crop", params, [shape, ref]), [x, np.zeros(ref)], gpu_device, rtol=0,
                 propagate_down=[True, False])


def test_errors():
    with pytest.raises(ConfigError, match=r"the crop of axis 3 \(size 4 at offset 2\) goes past "
                                          r"bottom 0's size 5"):
        build("Crop", {"offset": 2}, [(1, 1, 6, 5), (1, 1, 4, 4)])
    with pytest.raises(ConfigError, match="offset: 3 values for the 2 cropped axes 2..3"):
        build("Crop", {"offset": [0, 0, 0]}, [(1, 1, 6, 5), (1, 1, 4, 4)])
    with pytest.raises(ConfigError, match=r"bottom 1 \(4, 4\) has fewer axes than bottom 0"):
        build("Crop", {"axis": 0}, [(6, 5, 3), (4, 4)])
    with pytest.raises(ConfigError, match="axis 4 is out of range for a 4-D bottom"):
        build("Crop", {"axis": 4}, [(1, 1, 6, 5), (1, 1, 4, 4)])
    with pytest.raises(ConfigError, match="at most 6 are supported"):
        build("Crop", {"axis": 0, "offset": 1}, [(3,) * 7, (2,) * 7])
