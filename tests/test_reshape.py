"""Reshape: Caffe's shape rules (0 copies, -1 infers, axis/num_axes); data copied unchanged."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_check import build, check_gradients, run_forward
from trainnet.errors import ConfigError


# The examples of caffe.proto's ReshapeParameter, and a few more.
@pytest.mark.parametrize("shape,params,expected", [
    ((2, 8), {"shape": {"dim": [2, 2, 4]}}, (2, 2, 4)),
    ((2, 8), {"shape": {"dim": [0, 2, 4]}}, (2, 2, 4)),
    ((2, 8), {"shape": {"dim": [0, 2, -1]}}, (2, 2, 4)),
    ((2, 8), {"shape": {"dim": [0, -1, 4]}}, (2, 2, 4)),
    ((2, 8), {"shape": {"dim": [2, 4]}, "axis": 1}, (2, 2, 4)),
    ((2, 8), {"shape": {"dim": [2, 4]}, "axis": -2}, (2, 2, 4)),
    ((2, 8), {"shape": {"dim": [1, 2]}, "num_axes": 1}, (1, 2, 8)),
    ((2, 8), {"shape": {"dim": [1]}, "num_axes": 0}, (1, 2, 8)),
    ((2, 8), {"shape": {"dim": [1]}, "axis": 1, "num_axes": 0}, (2, 1, 8)),
    ((2, 8), {"shape": {"dim": [1]}, "axis": -1}, (2, 8, 1)),
    ((2, 3, 4, 5), {"shape": {"dim": [0, -1]}}, (2, 60)),
    ((2, 3, 4, 5), {"shape": {"dim": [-1]}, "axis": 1, "num_axes": 2}, (2, 12, 5)),
    ((1,), {}, ()),
])
def test_shapes_and_copy(shape, params, expected):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    layer = build("Reshape", params, [shape])
    assert layer.top_shapes == [expected]
    io = run_forward(layer, [x])
    assert [io.top[0][i] for i in np.ndindex(*expected)] == list(x.reshape(-1))


def test_gradients():
    x = np.random.default_rng(0).normal(size=(2, 3, 2))
    check_gradients(build("Reshape", {"shape": {"dim": [0, -1]}}, [x.shape]), [x])


def test_gpu_parity_is_exact(gpu_device):
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    check_parity(build("Reshape", {"shape": {"dim": [4, -1]}, "axis": 1}, [x.shape]), [x],
                 gpu_device, rtol=0)


def test_errors():
    def error(params, shape):
        with pytest.raises(ConfigError) as info:
            build("Reshape", params, [shape])
        return info.value.message

    assert error({"shape": {"dim": [-1, -1]}}, (2, 8)) == \
        "shape [-1, -1]: at most one dim may be -1 (inferred)"
    assert error({"shape": {"dim": [3, -1]}}, (2, 8)) == \
        "shape [3, -1]: the bottom's count 16 ((2, 8)) is not divisible by the product of the " \
        "other dims (3)"
    assert error({"shape": {"dim": [3, 5]}}, (2, 8)) == \
        "the top shape (3, 5) holds 15 values but the bottom (2, 8) holds 16"
    assert error({"shape": {"dim": [0, 0, 0]}}, (2, 8)) == \
        "shape [0, 0, 0]: dim 2 is 0 (copy) but the bottom (2, 8) has no axis 2 to copy"
    assert error({"axis": 3}, (2, 8)) == "axis 3 is out of range for a 2-D bottom (2, 8)"
    assert error({"axis": -4}, (2, 8)) == "axis -4 is out of range for a 2-D bottom (2, 8)"
    assert error({"axis": 1, "num_axes": 2}, (2, 8)) == \
        "axis 1 + num_axes 2 goes past the 2 axes of the bottom (2, 8)"
    with pytest.raises(ValidationError):
        build("Reshape", {"shape": {"dim": [-2, 8]}}, [(2, 8)])
    with pytest.raises(ValidationError):
        build("Reshape", {"num_axes": -2}, [(2, 8)])
