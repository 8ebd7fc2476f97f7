"""SoftmaxWithLoss against a loop reference: normalization modes, ignore_label, spatial labels;
CPU/GPU parity, a bad label on the GPU, and a replayed graph."""

import math

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io
from layer_cases import Case, check_graph_replay, layer_tests
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


# --- CPU/GPU parity ----------------------------------------------------------------------------
def loss_data(shape, axis=1, seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    label_shape = shape[:axis] + shape[axis + 1:]
    label = rng.integers(0, shape[axis], size=label_shape).astype(np.float32)
    if ignore is not None:
        label.reshape(-1)[::3] = ignore
    return rng.normal(size=shape) * 3, label


def loss_case(params, shape, axis=1, seed=0, ignore=None, **kw):
    return Case("SoftmaxWithLoss", params, loss_data(shape, axis, seed, ignore),
                propagate_down=[True, False], **kw)


CASES = (  # spatial: a label per pixel
    [loss_case({"normalization": mode, "ignore_label": ignore}, (3, 4, 2, 3), ignore=ignore)
     for mode in ("VALID", "FULL", "BATCH_SIZE", "NONE") for ignore in (None, 2, -1, 255)]
    + [loss_case({"normalize": normalize, "ignore_label": 1}, (5, 3), ignore=1)
       for normalize in (True, False)]
    + [loss_case(dict(params, axis=axis), shape, axis % len(shape), seed=5)
       for shape, axis, params in [((2, 3, 4, 5), 1, {"ignore_label": 0}),
                                   ((2, 3, 4), 2, {"normalization": "BATCH_SIZE"}),
                                   ((3, 7, 2), -1, {"normalization": "FULL"}), ((1, 1000), 1, {})]]
)
globals().update(layer_tests(CASES))


@pytest.mark.parametrize("weight", [1.0, 2.5, -0.3, 0.0])
def test_gpu_loss_weight_is_the_top_diff(gpu_device, weight):
    x, label = loss_data((4, 6))
    layer = build("SoftmaxWithLoss", {}, [x.shape, label.shape])
    cpu, _ = check_parity(layer, [x, label], gpu_device, propagate_down=[True, False],
                          top_diffs=[np.array(weight)])
    assert cpu.top_diff[0] == np.float32(weight)


def test_gpu_probability_top_and_tiny_probabilities(gpu_device):
    x = np.array([[0.0, 200.0], [1.0, 1.0], [-3.0, 3.0]])
    label = np.array([0.0, 1.0, 1.0])
    layer = with_tops("SoftmaxWithLoss", {}, [x.shape, label.shape], 2)
    cpu, _ = check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])
    assert np.isfinite(cpu.top[0]).all()  # FLT_MIN keeps log(0) finite


def test_gpu_all_ignored(gpu_device):
    x, label = np.zeros((2, 3)), np.full(2, 5.0)
    layer = build("SoftmaxWithLoss", {"ignore_label": 5}, [x.shape, label.shape])
    cpu, gpu = check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])
    assert float(gpu_device.to_host(gpu.top[0])) == 0.0
    assert not gpu_device.to_host(gpu.bottom_diff[0]).any()


def test_gpu_label_out_of_range_is_nan(gpu_device):
    """The CPU pass refuses it; a GPU pass cannot stop, so it makes the loss and gradient NaN."""
    layer = build("SoftmaxWithLoss", {"ignore_label": -1}, [(3, 4), (3,)])
    cpu = make_io(layer, [np.zeros((3, 4), np.float32), np.array([0.0, 7.0, -1.0], np.float32)],
                  propagate_down=[True, False])
    cpu.top_diff[0][...] = 1
    gpu = gpu_io(layer, gpu_device, cpu, 0)
    layer.forward(gpu, gpu_device)
    layer.backward(gpu, gpu_device)
    assert np.isnan(gpu_device.to_host(gpu.top[0]))
    dx = gpu_device.to_host(gpu.bottom_diff[0])
    assert np.isnan(dx[1]).all() and np.isfinite(dx[[0, 2]]).all() and not dx[2].any()


def test_gpu_graph_replay(gpu_device):
    """A new loss weight and new labels take effect on replay: both are read on the device."""
    x, label = loss_data((4, 5, 3), ignore=0, seed=6)
    x2, label2 = loss_data((4, 5, 3), ignore=0, seed=7)
    layer = build("SoftmaxWithLoss", {"ignore_label": 0}, [x.shape, label.shape])
    check_graph_replay(layer, [x, label], gpu_device, [x2, label2], top_diffs=[np.array(1.0)],
                       new_top_diffs=[np.array(3.0)], propagate_down=[True, False])
