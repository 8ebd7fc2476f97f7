"""Concat: joins bottoms along an axis like np.concatenate; backward slices the gradient back."""

import numpy as np
import pytest

from gpu_check import check_parity
from layer_check import build, check_gradients, run_forward
from trainnet.errors import ConfigError


@pytest.mark.parametrize("shapes,params,axis", [
    ([(2, 3, 4), (2, 1, 4), (2, 2, 4)], {}, 1),
    ([(2, 3), (4, 3)], {"axis": 0}, 0),
    ([(2, 3, 2), (2, 3, 5)], {"axis": -1}, 2),
    ([(1, 2, 3), (1, 2, 3)], {"concat_dim": 2}, 2),
    ([(3, 2)], {}, 1),
])
def test_forward_matches_numpy_concatenate(shapes, params, axis):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    layer = build("Concat", params, shapes)
    io = run_forward(layer, xs)
    np.testing.assert_array_equal(io.top[0], np.concatenate(xs, axis=axis))


def test_gradients():
    rng = np.random.default_rng(1)
    shapes = [(2, 1, 3), (2, 2, 3), (2, 3, 3)]
    check_gradients(build("Concat", {}, shapes), [rng.normal(size=s) for s in shapes])


@pytest.mark.parametrize("shapes,params", [
    ([(2, 3, 4), (2, 1, 4), (2, 2, 4)], {}),
    ([(2, 3), (4, 3)], {"axis": 0}),
    ([(2, 3, 2), (2, 3, 5), (2, 3, 1)], {"axis": -1}),
])
def test_gpu_parity_is_exact(shapes, params, gpu_device):
    rng = np.random.default_rng(2)
    layer = build("Concat", params, shapes)
    check_parity(layer, [rng.normal(size=s) for s in shapes], gpu_device, rtol=0)
    # a bottom that takes no gradient is left alone
    cpu, gpu = check_parity(layer, [rng.normal(size=s) for s in shapes], gpu_device, rtol=0,
                            propagate_down=[True, False] + [True] * (len(shapes) - 2))
    assert gpu.bottom_diff[1] is None


def test_errors():
    with pytest.raises(ConfigError, match=r"bottom 1 has shape \(2, 3, 5\) but bottom 0 has "
                                          r"\(2, 3, 4\): all dims but axis 1 must match"):
        build("Concat", {}, [(2, 3, 4), (2, 3, 5)])
    with pytest.raises(ConfigError, match=r"bottom 1 has shape \(2, 3\) but bottom 0 has "
                                          r"\(2, 3, 4\)"):
        build("Concat", {}, [(2, 3, 4), (2, 3)])
    with pytest.raises(ConfigError, match="axis 3 is out of range for a 3-D bottom"):
        build("Concat", {"axis": 3}, [(2, 3, 4), (2, 3, 4)])
    with pytest.raises(ConfigError, match="give either axis or concat_dim, not both"):
        build("Concat", {"axis": 1, "concat_dim": 1}, [(2, 3), (2, 3)])
    with pytest.raises(ConfigError, match="concat_dim 2 is out of range for a 2-D bottom"):
        build("Concat", {"concat_dim": 2}, [(2, 3), (2, 3)])
