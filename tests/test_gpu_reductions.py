"""Two-stage GPU reductions (issue 11, part 10): every loss forward, Accuracy, a single-row
Reduction and BatchNorm's statistics and backward sums run a grid of ``partial_blocks`` blocks
writing partials, then one block (one thread per channel for BatchNorm) adding them in order.
These cases are sized so that there are several blocks and the last one is partial, with
several hundred rows, and check CPU/GPU parity, NaN labels, exact counts and repeatability."""

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io
from layer_check import build, make_io
from test_split import with_tops
from trainnet.kernels.sources import BLOCK, MAX_PARTIALS, partial_blocks
from trainnet.layers import loss as loss_module
from trainnet.layers.base import StepContext

GPU = StepContext(gpu=True)


def test_partial_blocks_depend_on_the_shape_only():
    assert partial_blocks(1) == partial_blocks(BLOCK) == 1
    assert partial_blocks(BLOCK + 1) == 2
    assert partial_blocks(10 ** 9) == MAX_PARTIALS
    assert partial_blocks(10 ** 6, segments=64) == MAX_PARTIALS // 64
    assert partial_blocks(10 ** 6, segments=1000) == 1  # at least one block per segment
    assert partial_blocks(0) == 1


def labels(rng, rows, classes, ignore=None):
    label = rng.integers(0, classes, size=rows).astype(np.float32)
    if ignore is not None:
        label[::7] = ignore
    return label


def softmax_case(rng):
    x = rng.normal(size=(700, 5))
    return "SoftmaxWithLoss", {"ignore_label": 2}, [x, labels(rng, 700, 5, ignore=2)]


def softmax_full_case(rng):
    x = rng.normal(size=(10, 4, 60))
    label = rng.integers(0, 4, size=(10, 60)).astype(np.float32)
    return "SoftmaxWithLoss", {"normalization": "FULL", "ignore_label": 0}, [x, label]


def infogain_case(rng):
    h = rng.uniform(0, 1, size=(4, 4))
    return "InfogainLoss", {}, [rng.normal(size=(600, 4)), labels(rng, 600, 4), h]


def sigmoid_case(rng):
    t = rng.integers(0, 2, size=(300, 3)).astype(np.float32)
    t[::5, 1] = -1
    return ("SigmoidCrossEntropyLoss", {"ignore_label": -1, "normalization": "VALID"},
            [rng.normal(size=(300, 3)), t])


def euclidean_case(rng):
    return "EuclideanLoss", {}, [rng.normal(size=(37, 29)), rng.normal(size=(37, 29))]


def hinge_case(rng, norm):
    return "HingeLoss", {"norm": norm}, [rng.normal(size=(300, 4)), labels(rng, 300, 4)]


def multinomial_case(rng):
    p = rng.uniform(0.01, 1, size=(600, 5))
    return "MultinomialLogisticLoss", {}, [p / p.sum(1, keepdims=True), labels(rng, 600, 5)]


def contrastive_case(rng, legacy):
    a, b = rng.normal(size=(600, 3)), rng.normal(size=(600, 3))
    y = rng.integers(0, 2, size=600).astype(np.float32)
    return "ContrastiveLoss", {"legacy_version": legacy, "margin": 4.0}, [a, b, y]


CASES = {
    "softmax": softmax_case, "softmax_full": softmax_full_case, "infogain": infogain_case,
    "sigmoid": sigmoid_case, "euclidean": euclidean_case,
    "hinge_l1": lambda rng: hinge_case(rng, "L1"), "hinge_l2": lambda rng: hinge_case(rng, "L2"),
    "multinomial": multinomial_case,
    "contrastive": lambda rng: contrastive_case(rng, False),
    "contrastive_legacy": lambda rng: contrastive_case(rng, True),
}
NO_GRAD = {"SoftmaxWithLoss": [True, False], "InfogainLoss": [True, False, False],
           "SigmoidCrossEntropyLoss": [True, False], "HingeLoss": [True, False],
           "MultinomialLogisticLoss": [True, False], "ContrastiveLoss": [True, True, False]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_parity_over_several_blocks(gpu_device, case):
    type_name, params, bottoms = CASES[case](np.random.default_rng(3))
    layer = build(type_name, params, [b.shape for b in bottoms])
    blocks = layer.buffers(GPU)["partials"].shape[0]
    assert blocks > 1  # several blocks, the last one partial
    check_parity(layer, bottoms, gpu_device, rtol=2e-5, propagate_down=NO_GRAD.get(type_name))


@pytest.mark.parametrize("case", ["softmax", "sigmoid", "euclidean", "contrastive"])
def test_loss_is_the_same_bits_run_to_run(gpu_device, case):
    type_name, params, bottoms = CASES[case](np.random.default_rng(4))
    layer = build(type_name, params, [b.shape for b in bottoms])
    cpu = make_io(layer, [np.asarray(b, np.float32) for b in bottoms])
    gpu = gpu_io(layer, gpu_device, cpu, 0)
    losses = []
    for _ in range(2):
        layer.forward(gpu, gpu_device)
        losses.append(gpu_device.to_host(gpu.top[0]).copy())
    np.testing.assert_array_equal(losses[0], losses[1])


@pytest.mark.parametrize("type_name,params", [("SoftmaxWithLoss", {}), ("InfogainLoss", {}),
                                              ("HingeLoss", {}), ("MultinomialLogisticLoss", {})])
def test_a_bad_label_in_a_later_block_makes_the_loss_nan(gpu_device, type_name, params):
    rows, classes = 700, 4
    rng = np.random.default_rng(5)
    bottoms = [rng.uniform(0.1, 1, size=(rows, classes)).astype(np.float32),
               labels(rng, rows, classes)]
    bottoms[1][650] = classes + 3
    if type_name == "InfogainLoss":
        bottoms.append(np.eye(classes, dtype=np.float32))
    layer = build(type_name, params, [b.shape for b in bottoms])
    gpu = gpu_io(layer, gpu_device, make_io(layer, bottoms), 0)
    layer.forward(gpu, gpu_device)
    assert np.isnan(gpu_device.to_host(gpu.top[0]))


@pytest.mark.parametrize("params", [{}, {"top_k": 2, "ignore_label": 1}])
def test_accuracy_parity_over_several_blocks(gpu_device, params):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, size=(700, 6)).astype(np.float32)  # ties
    layer = build("Accuracy", params, [x.shape, (700,)])
    assert layer.buffers(GPU)["counts"].shape[0] > 1
    check_parity(layer, [x, labels(rng, 700, 6)], gpu_device, backward=False)


def test_accuracy_per_class_over_several_blocks(gpu_device):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20, 5, 30))
    layer = with_tops("Accuracy", {"top_k": 2}, [x.shape, (20, 30)], 2)
    assert layer.buffers(GPU)["counts"].shape == (partial_blocks(600), 3 + 2 * 5)
    label = rng.integers(0, 5, size=(20, 30)).astype(np.float32)
    check_parity(layer, [x, label], gpu_device, backward=False)


def test_accuracy_bad_label_in_a_later_block_is_nan(gpu_device):
    x = np.random.default_rng(8).normal(size=(700, 3)).astype(np.float32)
    label = np.zeros(700, np.float32)
    label[600] = 9
    layer = build("Accuracy", {}, [x.shape, label.shape])
    gpu = gpu_io(layer, gpu_device, make_io(layer, [x, label]), 0)
    layer.forward(gpu, gpu_device)
    assert np.isnan(gpu_device.to_host(gpu.top[0]))


def test_loss_counts_are_exact_past_two_to_the_24(gpu_device):
    """loss_finish adds the blocks' counts in int64: 300 counts of 2^17 + 1 (a total past 2^24,
    where float32 sums go wrong) normalize by exactly that total."""
    dev = gpu_device
    counts = np.full(300, 2 ** 17 + 1, np.int64)
    partials = np.ones(300, np.float32)
    arrays = [dev.zeros((1,), np.float32), dev.zeros((1,), np.float32)]
    inputs = []
    for host in (partials, counts):
        inputs.append(dev.zeros(host.shape, host.dtype))
        dev.upload(inputs[-1], host)
    dev.backend.launch_blocks(loss_module.KERNELS, "loss_finish", 1, BLOCK, *arrays, *inputs,
                              np.float32(0), np.float32(1), np.int64(300))
    assert float(dev.to_host(arrays[1])[0]) == float(np.float32(counts.sum()))
    assert np.isclose(float(dev.to_host(arrays[0])[0]), 300 / counts.sum(), rtol=1e-6)


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
def test_single_row_reduction_over_several_blocks(gpu_device, op):
    x = np.random.default_rng(9).normal(size=(23, 41))
    layer = build("Reduction", {"operation": op, "coeff": 0.5}, [x.shape])
    assert layer.buffers(GPU)["partials"].shape == (partial_blocks(23 * 41),)
    assert partial_blocks(23 * 41) > 1
    check_parity(layer, [x], gpu_device, rtol=1e-5)
