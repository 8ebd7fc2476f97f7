"""SoftmaxWithLoss against a loop reference: normalization modes, ignore_label, spatial labels."""

import math

import numpy as np
import pytest

from layer_check import build, check_gradients, make_io, run_forward
from test_split import with_tops
from trainnet.errors import ConfigError, TrainnetError
from trainnet.runtime.device import CPU

FLT_MIN = 1.17549435e-38


def naive_loss(x, label, ignore=None, mode="VALID"):
    """x (N, C, *spatial), label (N, *spatial); Caffe's formula item by item."""
    n, c = x.shape[:2]
    inner = x[0, 0].size
    xs, ls = x.reshape(n, c, inner), label.reshape(n, inner)
    total, count = 0.0, 0
    for i in range(n):
        for j in range(inner):
            lab = int(ls[i, j])
            if lab == ignore:
                continue
            e = [math.exp(xs[i, k, j] - xs[i, :, j].max()) for k in range(c)]
            total -= math.log(max(e[lab] / sum(e), FLT_MIN))
            count += 1
    norm = {"VALID": count, "FULL": n * inner, "BATCH_SIZE": n, "NONE": 1}[mode]
    return total / max(1, norm)


def data(shape, label_shape, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, shape[1], size=label_shape).astype(np.float64)
    return rng.normal(size=shape) * 3, label


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, 2])
def test_forward_modes(mode, ignore):
    x, label = data((3, 4, 2, 3), (3, 2, 3))
    layer = build("SoftmaxWithLoss", {"normalization": mode, "ignore_label": ignore},
                  [x.shape, label.shape])
    io = run_forward(layer, [x, label])
    assert io.top[0].shape == ()
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label, ignore, mode), rel=1e-12)


@pytest.mark.parametrize("normalize,mode", [(True, "VALID"), (False, "BATCH_SIZE")])
def test_legacy_normalize(normalize, mode):
    x, label = data((2, 3, 4), (2, 1, 4))
    label[0, 0, 0] = 1
    params = {"normalize": normalize, "ignore_label": 1}
    io = run_forward(build("SoftmaxWithLoss", params, [x.shape, label.shape]), [x, label])
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label.reshape(2, 4), 1, mode))
    explicit = build("SoftmaxWithLoss", {**params, "normalization": "FULL"}, [x.shape, label.shape])
    assert explicit.p.mode == "FULL"  # an explicit normalization wins, as in Caffe


def test_all_ignored_divides_by_one_and_has_zero_gradient():
    x, label = np.zeros((2, 3)), np.full(2, 5.0)
    layer = build("SoftmaxWithLoss", {"ignore_label": 5}, [x.shape, label.shape])
    io = run_forward(layer, [x, label])
    assert float(io.top[0]) == 0.0
    io.top_diff[0][...] = 1.0
    layer.backward(io, CPU)
    assert not io.bottom_diff[0].any()


def test_float32():
    x, label = data((5, 3, 2), (5, 2))
    layer = build("SoftmaxWithLoss", {}, [x.shape, label.shape])
    io = run_forward(layer, [x.astype(np.float32), label.astype(np.float32)])
    assert io.top[0].dtype == np.float32
    assert float(io.top[0]) == pytest.approx(naive_loss(x, label), rel=1e-5)


def test_probability_top_and_tiny_probabilities():
    x = np.array([[0.0, 200.0], [1.0, 1.0]])
    layer = with_tops("SoftmaxWithLoss", {}, [x.shape, (2,)], 2)
    io = run_forward(layer, [x, np.array([0.0, 1.0])])
    assert float(io.top[0]) == pytest.approx((-math.log(FLT_MIN) + math.log(2)) / 2)
    np.testing.assert_allclose(io.top[1][1], [0.5, 0.5])


@pytest.mark.parametrize("shape,label_shape,params", [
    ((4, 5), (4,), {}),
    ((2, 3, 2, 2), (2, 1, 2, 2), {"ignore_label": 0}),
    ((2, 3, 4), (2, 3), {"axis": 2, "normalization": "BATCH_SIZE"}),
])
def test_gradients(shape, label_shape, params):
    x, label = data(shape, label_shape, seed=3)
    if params.get("axis") == 2:
        label = np.random.default_rng(3).integers(0, shape[2], size=label_shape).astype(float)
    layer = build("SoftmaxWithLoss", params, [shape, label_shape])
    check_gradients(layer, [x, label], check_bottoms=[True, False])


def test_loss_weight_scales_gradient_and_label_untouched():
    x, label = data((3, 4), (3,))
    layer = build("SoftmaxWithLoss", {}, [x.shape, label.shape])
    io = make_io(layer, [x, label], propagate_down=[True, False])
    layer.forward(io, CPU)
    io.top_diff[0][...] = 2.5
    layer.backward(io, CPU)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    p[np.arange(3), label.astype(int)] -= 1
    np.testing.assert_allclose(io.bottom_diff[0], p * 2.5 / 3)
    assert io.bottom_diff[1] is None


def test_label_out_of_range_names_layer_and_value():
    layer = build("SoftmaxWithLoss", {"ignore_label": -1}, [(3, 4), (3,)], name="loss")
    run_forward(layer, [np.zeros((3, 4)), np.array([0.0, -1.0, 3.0])])  # -1 is ignored
    with pytest.raises(TrainnetError, match=r"layer 'loss'.*label value 7 .*outside \[0, 4\)"):
        run_forward(layer, [np.zeros((3, 4)), np.array([0.0, 7.0, 1.0])])


def test_label_shape_mismatch():
    with pytest.raises(ConfigError,
                       match=r"bottom 1 \(label\) expects shape \(64,\) .*got \(32,\)"):
        build("SoftmaxWithLoss", {}, [(64, 10), (32,)])
