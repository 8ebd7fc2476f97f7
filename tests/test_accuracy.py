"""Accuracy against a loop with Caffe's rule: ties count against, ignore_label skipped."""

import numpy as np
import pytest

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
