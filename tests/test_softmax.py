"""Softmax against a per-position loop, its gradient, and CPU/GPU parity."""

import math

import numpy as np
import pytest

from gpu_check import check_parity
from layer_cases import Case, check_graph_replay, layer_tests, normal
from layer_check import build, run_forward
from trainnet.errors import ConfigError


def naive_softmax(x, axis):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:-1]):
        e = [math.exp(v - max(x[idx])) for v in x[idx]]
        out[idx] = [v / sum(e) for v in e]
    return np.moveaxis(out, -1, axis)


def softmax(bottoms, blobs, params):
    return naive_softmax(bottoms[0], params["axis"])


CASES = (
    [Case("Softmax", {"axis": axis}, [normal(shape, 0, 5)], ref=softmax, rtol=1e-12, gpu=False)
     for shape, axis in [((4, 5), 1), ((2, 3, 4, 2), 1), ((2, 3, 4), -1), ((3, 4), 0)]]
    + [Case("Softmax", {"axis": axis}, [normal(shape, 1)], grad=True, gpu=False)
       for shape, axis in [((3, 4), 1), ((2, 3, 2, 2), 1), ((2, 3, 4), 2)]]
    + [Case("Softmax", {"axis": axis}, [normal(shape, 0, 4)])
       for shape, axis in [((4, 10), 1), ((2, 5, 3, 4), 1), ((2, 5, 3, 4), 2), ((2, 3, 4), -1),
                           ((3, 4), 0), ((6, 1), 1)]]
)
globals().update(layer_tests(CASES))


def test_large_inputs_are_stable():
    x = np.array([[1000.0, 1000.0, -1000.0]], np.float32)
    io = run_forward(build("Softmax", {}, [x.shape]), [x])
    np.testing.assert_allclose(io.top[0], [[0.5, 0.5, 0.0]])


def test_bad_axis():
    with pytest.raises(ConfigError, match=r"axis 2 is out of range for a 2-D bottom \(4, 5\)"):
        build("Softmax", {"axis": 2}, [(4, 5)])


def test_gpu_large_inputs_are_stable(gpu_device):
    x = np.array([[1000.0, 1000.0, -1000.0], [-80.0, 0.0, 80.0]])
    cpu, _ = check_parity(build("Softmax", {}, [x.shape]), [x], gpu_device)
    np.testing.assert_allclose(cpu.top[0][0], [0.5, 0.5, 0.0])


def test_gpu_graph_replay(gpu_device):
    rng = np.random.default_rng(4)
    layer = build("Softmax", {"axis": 1}, [(2, 4, 3)])
    check_graph_replay(layer, [rng.normal(size=(2, 4, 3))], gpu_device,
                       [rng.normal(size=(2, 4, 3)) * 3], new_top_diffs=[rng.normal(size=(2, 4, 3))])
