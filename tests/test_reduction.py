"""Reduction: SUM, ASUM, SUMSQ and MEAN over the axes from ``axis`` on, times ``coeff``."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_cases import Case, layer_tests, normal
from layer_check import build, run_forward
from trainnet.errors import ConfigError
from trainnet.runtime.device import CPU

OPS = {"SUM": lambda v: v, "ASUM": abs, "SUMSQ": lambda v: v * v, "MEAN": lambda v: v}


def reduce_loops(x, op, axis, coeff):
    lead = x.shape[:axis]
    out = np.zeros(lead)
    for idx in np.ndindex(*lead):
        values = x[idx].reshape(-1)
        total = sum(OPS[op](float(v)) for v in values)
        out[idx] = coeff * (total / len(values) if op == "MEAN" else total)
    return out


def reduction(bottoms, blobs, params):
    x = bottoms[0]
    return reduce_loops(x, params["operation"], params["axis"] % x.ndim, params["coeff"])


def reduce(op, axis, coeff):
    return {"operation": op, "axis": axis, "coeff": coeff}


CASES = (
    [Case("Reduction", reduce(op, axis, coeff), [normal(shape)], ref=reduction, gpu=False)
     for shape, axis, coeff in [((2, 3, 4), 0, 1.0), ((2, 3, 4), 1, -0.5), ((2, 3, 4), -1, 2.0),
                                ((5,), 0, 3.0)] for op in OPS]
    + [Case("Reduction", reduce(op, axis, 0.7), [normal((2, 3, 2), 1)], grad=True, gpu=False,
            kink=0.0 if op == "ASUM" else None) for axis in (0, 1) for op in OPS]
)
globals().update(layer_tests(CASES))


def test_axis_0_gives_a_scalar_top():
    layer = build("Reduction", {}, [(2, 3)])
    assert layer.top_shapes == [()]
    assert float(run_forward(layer, [np.ones((2, 3))]).top[0]) == 6.0


def test_asum_gradient_is_zero_at_zero():
    layer = build("Reduction", {"operation": "ASUM"}, [(3,)])
    io = run_forward(layer, [np.array([-2.0, 0.0, 3.0])])
    io.top_diff[0][...] = 2.0
    layer.backward(io, CPU)
    np.testing.assert_array_equal(io.bottom_diff[0], [-2, 0, 2])


def test_only_asum_and_sumsq_keep_the_bottom_for_backward():
    reads = {op: build("Reduction", {"operation": op}, [(2, 3)]).backward_reads_bottom
             for op in OPS}
    assert reads == {"SUM": False, "ASUM": True, "SUMSQ": True, "MEAN": False}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("shape,axis,coeff", [((3, 4, 5), 0, 1.0), ((3, 4, 5), 1, 0.25),
                                              ((300, 7), -1, -2.0)])
def test_gpu_parity(op, shape, axis, coeff, gpu_device):
    x = np.random.default_rng(2).normal(size=shape)
    x[0, 0] = 0.0  # sign(0) = 0 on both
    layer = build("Reduction", {"operation": op, "axis": axis, "coeff": coeff}, [shape])
    cpu, gpu = check_parity(layer, [x], gpu_device, rtol=1e-6)
    # backward does the same float32 operations on both devices
    np.testing.assert_array_equal(gpu_device.to_host(gpu.bottom_diff[0]), cpu.bottom_diff[0])


def test_errors():
    with pytest.raises(ConfigError, match="axis 2 is out of range for a 2-D bottom"):
        build("Reduction", {"axis": 2}, [(2, 3)])
    with pytest.raises(ValidationError, match="SUM"):
        build("Reduction", {"operation": "PROD"}, [(2, 3)])
