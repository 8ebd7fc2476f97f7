"""ReLU (and leaky ReLU) against an element loop, its gradient, and running in place."""

import numpy as np
import pytest

from layer_check import build, check_gradients, make_io, run_forward
from trainnet.runtime.device import CPU


@pytest.mark.parametrize("slope", [0.0, 0.1, 1.0, 2.5])
def test_forward_matches_loop(slope):
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    io = run_forward(build("ReLU", {"negative_slope": slope}, [x.shape]), [x])
    expected = np.array([v if v > 0 else slope * v for v in x.reshape(-1)]).reshape(x.shape)
    np.testing.assert_allclose(io.top[0], expected, rtol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.25, 2.5])
def test_gradients(slope):
    x = np.random.default_rng(1).normal(size=(3, 5))
    check_gradients(build("ReLU", {"negative_slope": slope}, [x.shape]), [x], kink=0.0, kink_range=1e-3)


@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_in_place_matches_out_of_place(slope):
    """With top and bottom (and their diffs) the same arrays, as the plan binds an in-place ReLU."""
    rng = np.random.default_rng(2)
    x, dy = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    layer = build("ReLU", {"negative_slope": slope}, [x.shape])
    ref = make_io(layer, [x.copy()])
    layer.forward(ref, CPU)
    ref.top_diff[0][...] = dy
    layer.backward(ref, CPU)

    io = make_io(layer, [x.copy()])
    io.top = io.bottom
    io.top_diff = io.bottom_diff
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.top[0], ref.top[0])
    np.testing.assert_array_equal(io.bottom_diff[0], ref.bottom_diff[0])


def test_negative_slope_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        build("ReLU", {"negative_slope": -0.5}, [(2, 3)])
