"""Input: one shape per top or one for all; forward leaves the blob to the user (on the GPU too)."""

import pytest

from gpu_check import check_parity
from layer_check import build
from test_split import with_tops
from trainnet.errors import ConfigError


def test_one_shape_per_top():
    layer = with_tops("Input", {"shape": [{"dim": [2, 3]}, {"dim": [2]}]}, [], 2)
    assert layer.top_shapes == [(2, 3), (2,)]
    assert not layer.has_backward and layer.is_data


def test_single_shape_for_all_tops():
    assert with_tops("Input", {"shape": {"dim": [4, 1]}}, [], 3).top_shapes == [(4, 1)] * 3
    assert build("Input", {"shape": [{"dim": [5]}]}).top_shapes == [(5,)]


def test_errors():
    with pytest.raises(ConfigError, match="2 shapes given for 3 tops"):
        with_tops("Input", {"shape": [{"dim": [1]}, {"dim": [2]}]}, [], 3)
    with pytest.raises(ConfigError, match="shape: give one shape per top"):
        build("Input", {})


def test_gpu_matches_cpu(gpu_device):
    layer = build("Input", {"shape": [{"dim": [2, 3]}]})
    assert layer.has_gpu()
    check_parity(layer, [], gpu_device, backward=False)
