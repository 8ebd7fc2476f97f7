"""CPU/GPU parity of every layer's GPU pass (emulated everywhere; real GPU where present)."""

import numpy as np
import pytest

from gpu_check import check_parity
from layer_check import build


@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_relu(gpu_device, slope):
    rng = np.random.default_rng(0)
    layer = build("ReLU", {"negative_slope": slope}, [(2, 3, 4, 5)])
    check_parity(layer, [rng.normal(size=(2, 3, 4, 5))], gpu_device)
