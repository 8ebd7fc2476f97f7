"""Tile: the block from ``axis`` on repeated ``tiles`` times (Caffe's order); backward sums."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_cases import Case, layer_tests, normal
from layer_check import build, run_forward
from trainnet.errors import ConfigError


def tile_loops(x, axis, tiles):
    """Caffe's TileLayer::Forward_cpu: for each outer index, ``tiles`` copies of the inner block."""
    outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))
    flat, out = x.reshape(-1), []
    for o in range(outer):
        for _ in range(tiles):
            out.extend(flat[o * inner:(o + 1) * inner])
    return np.array(out).reshape(x.shape[:axis] + (x.shape[axis] * tiles,) + x.shape[axis + 1:])


def tile(bottoms, blobs, params):
    x = bottoms[0]
    return tile_loops(x, params.get("axis", 1) % x.ndim, params["tiles"])


CASES = [Case("Tile", params, [normal(shape)], ref=tile, rtol=0, gpu=False)
         for shape, params in [((2, 3, 2), {"tiles": 3}), ((2, 3), {"tiles": 2, "axis": 0}),
                               ((2, 3, 2), {"tiles": 4, "axis": -1}), ((2, 3), {"tiles": 1})]] + [
    Case("Tile", {"tiles": 3, "axis": 1}, [normal((2, 2, 3), 1)], grad=True, gpu=False)]
globals().update(layer_tests(CASES))


def test_tiles_repeat_the_whole_block():
    """Caffe repeats [a b c] as [a b c a b c], not [a a b b c c]."""
    io = run_forward(build("Tile", {"tiles": 2}, [(1, 3)]), [np.array([[1.0, 2.0, 3.0]])])
    np.testing.assert_array_equal(io.top[0], [[1, 2, 3, 1, 2, 3]])


@pytest.mark.parametrize("shape,params", [
    ((2, 3, 2), {"tiles": 3}),
    ((3, 4), {"tiles": 9, "axis": 0}),
    ((2, 5), {"tiles": 12, "axis": -1}),
    ((4, 1), {"tiles": 40, "axis": -1}),
])
def test_gpu_parity(shape, params, gpu_device):
    """Forward copies exactly; backward's sums may round differently from NumPy's (pairwise)."""
    x = np.random.default_rng(2).normal(size=shape)
    cpu, gpu = check_parity(build("Tile", params, [shape]), [x], gpu_device, rtol=1e-6)
    np.testing.assert_array_equal(gpu_device.to_host(gpu.top[0]), cpu.top[0])


def test_errors():
    with pytest.raises(ValidationError, match="tiles"):
        build("Tile", {}, [(2, 3)])
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        build("Tile", {"tiles": 0}, [(2, 3)])
    with pytest.raises(ConfigError, match="axis 2 is out of range for a 2-D bottom"):
        build("Tile", {"tiles": 2, "axis": 2}, [(2, 3)])
