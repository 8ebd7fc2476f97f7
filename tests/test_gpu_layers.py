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


# --- Dropout, Split, Flatten, Input --------------------------------------------------------------
from test_split import with_tops  # noqa: E402
from trainnet.runtime.device import CPU  # noqa: E402


@pytest.mark.parametrize("ratio, scale_train", [(0.5, True), (0.3, False)])
def test_dropout_train(gpu_device, ratio, scale_train):
    """Philox masks: the same units dropped on CPU and GPU, and a new mask every pass."""
    rng = np.random.default_rng(0)
    layer = build("Dropout", {"dropout_ratio": ratio, "scale_train": scale_train}, [(4, 3, 5, 7)])
    cpu, gpu = check_parity(layer, [rng.normal(size=(4, 3, 5, 7))], gpu_device, rtol=0, passes=3)
    np.testing.assert_array_equal(gpu_device.to_host(gpu.buf["mask"]), cpu.buf["mask"])
    assert int(cpu.state.counter[0]) == int(gpu_device.to_host(gpu.state.counter)[0]) == 3
    assert gpu.state.get_state()["key"] == cpu.state.get_state()["key"]


def test_dropout_graph_replay_draws_new_masks(gpu_device):
    """The pass counter lives in device memory: a replayed capture advances it."""
    rng = np.random.default_rng(1)
    layer = build("Dropout", {}, [(6, 50)])
    cpu, gpu = check_parity(layer, [rng.normal(size=(6, 50))], gpu_device, rtol=0)
    graph = gpu_device.backend.capture(lambda: layer.forward(gpu, gpu_device))
    for _ in range(2):
        graph.replay()
        layer.forward(cpu, CPU)
        np.testing.assert_array_equal(gpu_device.to_host(gpu.top[0]), cpu.top[0])


@pytest.mark.parametrize("ratio, scale_train", [(0.5, True), (0.25, False)])
def test_dropout_test_phase(gpu_device, ratio, scale_train):
    rng = np.random.default_rng(2)
    layer = build("Dropout", {"dropout_ratio": ratio, "scale_train": scale_train}, [(3, 8)],
                  phase="TEST")
    check_parity(layer, [rng.normal(size=(3, 8))], gpu_device, rtol=0, passes=2)


@pytest.mark.parametrize("tops", [2, 3, 5])
def test_split(gpu_device, tops):
    rng = np.random.default_rng(3)
    check_parity(with_tops("Split", {}, [(2, 3, 4)], tops), [rng.normal(size=(2, 3, 4))],
                 gpu_device, rtol=0)


@pytest.mark.parametrize("params, shape", [({}, (2, 3, 4, 5)), ({"axis": 2}, (2, 3, 4, 5))])
def test_flatten(gpu_device, params, shape):
    rng = np.random.default_rng(4)
    check_parity(build("Flatten", params, [shape]), [rng.normal(size=shape)], gpu_device, rtol=0)


def test_input(gpu_device):
    layer = build("Input", {"shape": [{"dim": [2, 3]}]})
    assert layer.has_gpu()
    check_parity(layer, [], gpu_device, backward=False)
