"""Accuracy against a loop with Caffe's rule: ties count against, ignore_label skipped; CPU/GPU
parity and a replayed graph."""

import numpy as np
import pytest

from gpu_check import check_parity
from layer_cases import Case, check_graph_replay, layer_tests
from layer_check import build, run_forward
from test_split import with_tops
from trainnet.errors import ConfigError, TrainnetError


def naive_accuracy(x, label, top_k=1, ignore=None):
    """x (N, C, *spatial), label (N, *spatial): (accuracy, per-class accuracy)."""
    n, c = x.shape[:2]
    xs, ls = x.reshape(n, c, -1), label.reshape(n, -1)
    hits, seen = np.zeros(c), np.zeros(c)
    for i in range(n):
        for j in range(xs.shape[2]):
            lab = int(ls[i, j])
            if lab == ignore:
                continue
            better = sum(1 for k in range(c) if xs[i, k, j] >= xs[i, lab, j])
            seen[lab] += 1
            hits[lab] += better <= top_k
    total = hits.sum() / seen.sum() if seen.sum() else 0.0
    return total, np.where(seen > 0, hits / np.maximum(seen, 1), 0.0)


@pytest.mark.parametrize("shape,label_shape,params", [
    ((20, 5), (20,), {}),
    ((20, 5), (20,), {"top_k": 3}),
    ((4, 3, 2, 3), (4, 2, 3), {"ignore_label": 1}),
    ((6, 4), (6, 1), {"top_k": 2, "ignore_label": 0}),
])
def test_matches_loop(shape, label_shape, params):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=shape).astype(np.float32)  # small integers: many ties
    label = rng.integers(0, shape[1], size=label_shape).astype(np.float32)
    io = run_forward(with_tops("Accuracy", params, [shape, label_shape], 2), [x, label])
    total, per_class = naive_accuracy(x, label, params.get("top_k", 1), params.get("ignore_label"))
    assert io.top[0].shape == () and io.top[1].shape == (shape[1],)
    assert float(io.top[0]) == pytest.approx(total)
    np.testing.assert_allclose(io.top[1], per_class, rtol=1e-6)


def test_ties_count_against():
    x = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    label = np.array([1.0, 1.0])
    io = run_forward(build("Accuracy", {}, [x.shape, label.shape]), [x, label])
    assert float(io.top[0]) == 0.5  # row 0: two scores >= the true one, so wrong at top_k 1
    io = run_forward(build("Accuracy", {"top_k": 2}, [x.shape, label.shape]), [x, label])
    assert float(io.top[0]) == 1.0


def test_all_ignored_gives_zero():
    io = run_forward(build("Accuracy", {"ignore_label": 2}, [(3, 4), (3,)]),
                     [np.zeros((3, 4)), np.full(3, 2.0)])
    assert float(io.top[0]) == 0.0


def test_errors():
    with pytest.raises(ConfigError, match="top_k 5 exceeds the number of classes 4"):
        build("Accuracy", {"top_k": 5}, [(8, 4), (8,)])
    with pytest.raises(ConfigError, match=r"bottom 1 \(label\) expects shape \(8,\)"):
        build("Accuracy", {}, [(8, 4), (7,)])
    with pytest.raises(TrainnetError, match="label value 4"):
        run_forward(build("Accuracy", {}, [(2, 4), (2,)]), [np.zeros((2, 4)), np.array([0.0, 4.0])])


# --- CPU/GPU parity ----------------------------------------------------------------------------
def labels(rng, classes, shape):
    return rng.integers(0, classes, size=shape).astype(np.float32)


def scored(seed, shape=(40, 8), ignore=None):
    rng = np.random.default_rng(seed)
    x, label = rng.normal(size=shape), labels(rng, shape[1], shape[:1])
    if ignore is not None:
        label[::4] = ignore
    return x, label


def spatial_and_axis():
    """(scores, labels) for classes on axis 1 with spatial labels, then on axis 2."""
    rng = np.random.default_rng(10)
    first = rng.normal(size=(2, 5, 3, 4)), labels(rng, 5, (2, 1, 3, 4))
    return first, (rng.normal(size=(3, 4, 6)), labels(rng, 6, (3, 4)))


SPATIAL, AXIS = spatial_and_axis()
CASES = [Case("Accuracy", {"top_k": top_k, "ignore_label": ignore}, scored(top_k, ignore=ignore),
              tops=n_tops) for top_k in (1, 5) for ignore in (None, 3) for n_tops in (1, 2)] + [
    Case("Accuracy", {"top_k": 2, "ignore_label": 4}, SPATIAL, tops=2),
    Case("Accuracy", {"axis": 2}, AXIS)]
globals().update(layer_tests(CASES))


@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_gpu_ties_count_against(gpu_device, top_k):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 3, size=(50, 6)).astype(np.float64)  # many equal scores
    label = labels(rng, 6, (50,))
    layer = with_tops("Accuracy", {"top_k": top_k}, [x.shape, label.shape], 2)
    cpu, _ = check_parity(layer, [x, label], gpu_device)
    assert 0 < float(cpu.top[0]) < 1


def test_gpu_all_ignored_and_empty_classes(gpu_device):
    x, label = np.random.default_rng(11).normal(size=(4, 5)), np.array([1.0, 1.0, 2.0, 2.0])
    layer = with_tops("Accuracy", {}, [x.shape, label.shape], 2)
    check_parity(layer, [x, label], gpu_device)  # classes 0, 3, 4 have no label: 0
    layer = build("Accuracy", {"ignore_label": 7}, [x.shape, label.shape])
    cpu, _ = check_parity(layer, [x, np.full(4, 7.0)], gpu_device)
    assert float(cpu.top[0]) == 0.0


def test_gpu_graph_replay(gpu_device):
    rng = np.random.default_rng(12)
    layer = with_tops("Accuracy", {"top_k": 2}, [(30, 6), (30,)], 2)
    check_graph_replay(layer, [rng.normal(size=(30, 6)), labels(rng, 6, (30,))], gpu_device,
                       [rng.normal(size=(30, 6)), labels(rng, 6, (30,))])
