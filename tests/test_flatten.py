"""Flatten: shapes as Caffe computes them; data and diff copied unchanged, on the CPU and the GPU."""

import numpy as np
import pytest

from layer_cases import Case, layer_tests, normal
from layer_check import build, run_forward
from trainnet.errors import ConfigError


@pytest.mark.parametrize("shape,params,expected", [
    ((2, 3, 4, 5), {}, (2, 60)),
    ((2, 3, 4, 5), {"axis": 2}, (2, 3, 20)),
    ((2, 3, 4, 5), {"axis": 1, "end_axis": 2}, (2, 12, 5)),
    ((2, 3, 4, 5), {"axis": 0, "end_axis": -3}, (6, 4, 5)),
    ((2, 3), {"axis": -1}, (2, 3)),
])
def test_shape_and_copy(shape, params, expected):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    layer = build("Flatten", params, [shape])
    assert layer.top_shapes == [expected]
    io = run_forward(layer, [x])
    assert [io.top[0][idx] for idx in np.ndindex(*expected)] == list(x.reshape(-1))


CASES = [Case("Flatten", {"axis": 1}, [normal((2, 3, 2))], grad=True, gpu=False)] + [
    Case("Flatten", params, [normal((2, 3, 4, 5), 4)], gpu_rtol=0) for params in ({}, {"axis": 2})]
globals().update(layer_tests(CASES))


def test_errors():
    with pytest.raises(ConfigError, match=r"axis 3 is out of range for a 2-D bottom \(2, 3\)"):
        build("Flatten", {"axis": 3}, [(2, 3)])
    with pytest.raises(ConfigError, match="end_axis 1 comes before axis 2"):
        build("Flatten", {"axis": 2, "end_axis": 1}, [(2, 3, 4)])
