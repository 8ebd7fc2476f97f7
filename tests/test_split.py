"""Split copies forward and sums gradients backward, on the CPU and the GPU."""

from types import SimpleNamespace

import numpy as np
import pytest

from layer_cases import Case, layer_tests, normal
from layer_check import run_forward
from trainnet.layers.base import layer_class
from trainnet.runtime.device import CPU


def with_tops(type_name, params, bottom_shapes, n_tops, phase="TRAIN"):
    """A layer built as the plan builds it, with a config naming ``n_tops`` tops."""
    cls = layer_class(type_name)
    common = SimpleNamespace(top=[f"t{i}" for i in range(n_tops)])
    return cls("layer", cls.Params.model_validate(params), phase, bottom_shapes, common=common)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_forward_copies(n):
    x = np.arange(6.0).reshape(2, 3)
    io = run_forward(with_tops("Split", {}, [x.shape], n), [x])
    assert len(io.top) == n
    for y in io.top:
        np.testing.assert_array_equal(y, x)


def test_backward_sums_and_skips_missing():
    layer = with_tops("Split", {}, [(2, 3)], 3)
    io = run_forward(layer, [np.ones((2, 3))])
    rng = np.random.default_rng(0)
    d = [rng.normal(size=(2, 3)) for _ in range(3)]
    io.top_diff = list(d)
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], d[0] + d[1] + d[2])
    io.top_diff = [None, d[1], None]
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.bottom_diff[0], d[1])
    io.top_diff = [None, None, None]
    layer.backward(io, CPU)
    assert not io.bottom_diff[0].any()


CASES = [Case("Split", {}, [normal((2, 3), 1)], tops=3, grad=True, gpu=False)] + [
    Case("Split", {}, [normal((2, 3, 4), 3)], tops=n, gpu_rtol=0) for n in (2, 3, 5)]
globals().update(layer_tests(CASES))
