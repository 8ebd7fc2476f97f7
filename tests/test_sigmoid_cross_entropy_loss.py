"""SigmoidCrossEntropyLoss against the textbook cross-entropy: normalization modes (BATCH_SIZE
by default, as Caffe), ignore_label, large scores, gradients, CPU/GPU parity."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import check_parity
from layer_check import build, check_gradients, make_io, run_forward
from trainnet.errors import ConfigError
from trainnet.runtime.device import CPU


def naive_loss(x, t, ignore=None, mode="BATCH_SIZE"):
    """-sum [t log p + (1 - t) log(1 - p)] / norm with p = 1 / (1 + exp(-x)), item by item."""
    n = x.shape[0]
    total, count = 0.0, 0
    for v, target in zip(x.reshape(-1), t.reshape(-1)):
        if ignore is not None and int(target) == ignore:
            continue
        p = 1 / (1 + math.exp(-v))
        total -= target * math.log(p) + (1 - target) * math.log(1 - p)
        count += 1
    norm = {"VALID": count, "FULL": x.size, "BATCH_SIZE": n, "NONE": 1}[mode]
    return total / max(1, norm)


def data(shape, seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 3
    t = rng.uniform(size=shape)
    t[rng.uniform(size=shape) < 0.3] = 1.0
    if ignore is not None:
        t[rng.uniform(size=shape) < 0.3] = ignore
    return x, t


@pytest.mark.parametrize("mode", [None, "VALID", "FULL", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, -1])
def test_forward_modes(mode, ignore):
    x, t = data((3, 4, 2), ignore=ignore)
    params = {"normalization": mode, "ignore_label": ignore}
    io = run_forward(build("SigmoidCrossEntropyLoss", params, [x.shape, t.shape]), [x, t])
    assert io.top[0].shape == ()
    want = naive_loss(x, t, ignore, mode or "BATCH_SIZE")  # Caffe's default for this layer
    assert float(io.top[0]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("normalize,mode", [(True, "VALID"), (False, "BATCH_SIZE")])
def test_legacy_normalize(normalize, mode):
    x, t = data((2, 5), ignore=-1)
    layer = build("SigmoidCrossEntropyLoss", {"normalize": normalize, "ignore_label": -1},
                  [x.shape, t.shape])
    assert layer.p.mode == mode
    assert float(run_forward(layer, [x, t]).top[0]) == pytest.approx(naive_loss(x, t, -1, mode))


def test_ignore_label_truncates_targets_as_caffe():
    """Caffe compares static_cast<int>(target): with ignore_label 0 every target below 1 is
    ignored, so only the targets equal to 1 count."""
    x = np.array([[0.5, -1.0, 2.0, 0.0]])
    t = np.array([[0.7, 1.0, 0.2, 1.0]])
    layer = build("SigmoidCrossEntropyLoss", {"ignore_label": 0, "normalization": "VALID"},
                  [x.shape, t.shape])
    io = run_forward(layer, [x, t])
    want = (math.log(1 + math.exp(1.0)) + math.log(2)) / 2
    assert float(io.top[0]) == pytest.approx(want)
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    assert io.bottom_diff[0][0, 0] == 0 and io.bottom_diff[0][0, 2] == 0


def test_large_scores_stay_finite():
    x = np.array([[100.0, -100.0, 100.0, -100.0]], dtype=np.float32)
    t = np.array([[1.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    layer = build("SigmoidCrossEntropyLoss", {}, [x.shape, t.shape])
    io = run_forward(layer, [x, t])
    assert float(io.top[0]) == pytest.approx(200.0)
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], [[0.0, 0.0, 1.0, -1.0]], atol=1e-7)


@pytest.mark.parametrize("params", [{}, {"ignore_label": -1, "normalization": "VALID"},
                                    {"normalization": "FULL"}])
def test_gradients(params):
    x, t = data((3, 2, 2), seed=3, ignore=params.get("ignore_label"))
    layer = build("SigmoidCrossEntropyLoss", params, [x.shape, t.shape])
    check_gradients(layer, [x, t], check_bottoms=[True, False])


def test_loss_weight_scales_gradient_and_targets_untouched():
    x, t = data((3, 4))
    layer = build("SigmoidCrossEntropyLoss", {}, [x.shape, t.shape])
    io = make_io(layer, [x, t], propagate_down=[True, False])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 0.5
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.bottom_diff[0], (1 / (1 + np.exp(-x)) - t) * 0.5 / 3)
    assert io.bottom_diff[1] is None


@pytest.mark.parametrize("params", [{}, {"normalization": "VALID", "ignore_label": -1},
                                    {"normalization": "FULL", "ignore_label": 1},
                                    {"normalization": "NONE"}, {"normalize": True}])
def test_gpu_parity(gpu_device, params):
    x, t = data((4, 3, 5), seed=4, ignore=params.get("ignore_label"))
    x[0, 0, :2] = [60.0, -60.0]  # the overflow-free form on both
    layer = build("SigmoidCrossEntropyLoss", params, [x.shape, t.shape])
    check_parity(layer, [x, t], gpu_device, propagate_down=[True, False])


def test_gpu_all_ignored_divides_by_one(gpu_device):
    x, t = np.ones((2, 3)), np.full((2, 3), 5.0)
    layer = build("SigmoidCrossEntropyLoss", {"ignore_label": 5, "normalization": "VALID"},
                  [x.shape, t.shape])
    cpu, _ = check_parity(layer, [x, t], gpu_device, propagate_down=[True, False])
    assert float(cpu.top[0]) == 0.0 and not cpu.bottom_diff[0].any()


def test_errors():
    with pytest.raises(ConfigError, match=r"bottoms 0 \(4, 3\) and 1 \(targets\) \(4, 2\) must "
                                          r"have the same count"):
        build("SigmoidCrossEntropyLoss", {}, [(4, 3), (4, 2)])
    with pytest.raises(ValidationError, match="normalization"):
        build("SigmoidCrossEntropyLoss", {"normalization": "MEAN"}, [(4, 3), (4, 3)])
