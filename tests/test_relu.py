"""ReLU (and leaky ReLU) against an element loop, its gradient, running in place, and CPU/GPU
parity."""

import numpy as np
import pytest

from layer_cases import Case, layer_tests, normal
from layer_check import build


def relu(bottoms, blobs, params):
    slope = params["negative_slope"]
    x = bottoms[0]
    return np.array([v if v > 0 else slope * v for v in x.reshape(-1)]).reshape(x.shape)


def leaky(slope):
    return {"negative_slope": slope}


CASES = (
    [Case("ReLU", leaky(s), [normal((2, 3, 4))], ref=relu, gpu=False) for s in (0.0, 0.1, 1.0, 2.5)]
    + [Case("ReLU", leaky(s), [normal((3, 5), 1)], grad=True, kink=0.0, gpu=False)
       for s in (0.0, 0.25, 2.5)]
    + [Case("ReLU", leaky(s), [normal((4, 6), 2)], in_place=True, gpu=False) for s in (0.0, 0.25)]
    + [Case("ReLU", leaky(s), [normal((2, 3, 4, 5))]) for s in (0.0, 0.3)]
)
globals().update(layer_tests(CASES))


def test_negative_slope_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        build("ReLU", {"negative_slope": -0.5}, [(2, 3)])
