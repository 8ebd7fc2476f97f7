"""CPU/GPU parity of Pooling, Softmax, SoftmaxWithLoss and Accuracy (emulated everywhere; a real
GPU where present), and a captured graph replayed on new inputs."""

import numpy as np
import pytest

from gpu_check import check_parity, gpu_io
from layer_check import build, make_io
from test_split import with_tops
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU

POOL_WINDOWS = [
    {"kernel_size": 2, "stride": 2},
    {"kernel_size": 3, "stride": 2},                       # overlapping windows
    {"kernel_size": 3, "stride": 3},                       # ceil: a last window past the edge
    {"kernel_size": 3, "stride": 2, "round_mode": "FLOOR"},
    {"kernel_size": 3, "stride": 2, "pad": 1},
    {"kernel_size": 2, "stride": 2, "pad": 1},             # 5x5: the last window is dropped
    {"kernel_size": 2, "stride": 2, "pad": 1, "round_mode": "FLOOR"},
    {"kernel_h": 2, "kernel_w": 3, "stride_h": 1, "stride_w": 2, "pad_h": 1, "pad_w": 0},
    {"kernel_h": 3, "kernel_w": 2, "stride_h": 3, "stride_w": 1, "pad_h": 0, "pad_w": 1},
    {"kernel_h": 1, "kernel_w": 2, "stride_h": 3, "stride_w": 2, "pad_h": 0, "pad_w": 1},
    {"kernel_size": 1, "stride": 1},
    {"global_pooling": True},
]
POOL_SHAPES = [(2, 3, 5, 5), (1, 2, 8, 7)]


def labels(rng, classes, shape):
    return rng.integers(0, classes, size=shape).astype(np.float32)


def check_graph_replay(layer, bottoms, device, new_bottoms, *, top_diffs=None,
                       new_top_diffs=None, propagate_down=None):
    """Capture one forward (and backward) as a graph, then replay it on new inputs: the results
    must follow the new inputs, so everything ran through the backend and nothing was computed
    or read on the host while the pass was recorded."""
    cpu, gpu = check_parity(layer, bottoms, device, top_diffs=top_diffs,
                            propagate_down=propagate_down)
    backward = layer.has_backward

    def step():
        layer.forward(gpu, device)
        if backward:
            layer.backward(gpu, device)
    graph = device.backend.capture(step)
    for dst, host in zip(gpu.bottom, new_bottoms):
        device.upload(dst, np.asarray(host, dst.dtype))
    for i, d in enumerate(new_top_diffs or []):
        device.upload(gpu.top_diff[i], np.asarray(d, np.float32))
        cpu.top_diff[i][...] = d
    cpu.bottom = [np.asarray(b, np.float32) for b in new_bottoms]
    graph.replay()
    layer.forward(cpu, CPU)
    if backward:
        layer.backward(cpu, CPU)
    outputs = [(cpu.top, gpu.top)] + ([(cpu.bottom_diff, gpu.bottom_diff)] if backward else [])
    for want_list, got_list in outputs:
        for want, got in zip(want_list, got_list):
            if want is not None:
                np.testing.assert_allclose(device.to_host(got), want, rtol=1e-4, atol=1e-6)


# --- Pooling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", POOL_SHAPES)
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("window", POOL_WINDOWS)
def test_pooling(gpu_device, window, pool, shape):
    layer = build("Pooling", dict(window, pool=pool), [shape])
    # The GPU pass adds in the CPU pass's order: the results agree bit for bit.
    check_parity(layer, [np.random.default_rng(0).normal(size=shape)], gpu_device, rtol=0)


@pytest.mark.parametrize("window", [{"kernel_size": 3, "stride": 2, "pad": 1},
                                    {"kernel_size": 2, "stride": 1},
                                    {"kernel_size": 3, "stride": 3}, {"global_pooling": True}])
def test_pooling_max_ties_pick_the_cpu_cell(gpu_device, window):
    """Many equal values per window: the gradient must reach the same cell as on the CPU."""
    shape = (2, 3, 7, 6)
    x = np.random.default_rng(1).integers(0, 3, size=shape).astype(np.float64)
    x[0, 0] = -5  # a whole plane of one value
    check_parity(build("Pooling", dict(window, pool="MAX"), [shape]), [x], gpu_device, rtol=0)


def test_pooling_max_padding_never_wins(gpu_device):
    x = -np.ones((1, 2, 3, 3))
    cpu, _ = check_parity(build("Pooling", {"kernel_size": 2, "stride": 2, "pad": 1}, [x.shape]),
                          [x], gpu_device, rtol=0)
    assert (cpu.top[0] == -1).all()


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("window", [{"kernel_size": 3, "stride": 2, "pad": 1},
                                    {"kernel_size": 2, "stride": 2}, {"global_pooling": True}])
def test_pooling_forward_only(gpu_device, pool, window):
    layer = build("Pooling", dict(window, pool=pool), [(2, 3, 6, 7)])
    ctx = StepContext(forward_only=True)
    assert layer.buffers(ctx) == {} and layer.buffers(StepContext(forward_only=True, gpu=True)) == {}
    check_parity(layer, [np.random.default_rng(2).normal(size=(2, 3, 6, 7))], gpu_device,
                 backward=False, rtol=0, ctx=ctx)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_graph_replay(gpu_device, pool):
    rng = np.random.default_rng(3)
    shape = (2, 2, 6, 6)
    layer = build("Pooling", {"pool": pool, "kernel_size": 3, "stride": 2, "pad": 1}, [shape])
    check_graph_replay(layer, [rng.normal(size=shape)], gpu_device, [rng.normal(size=shape)],
                       new_top_diffs=[rng.normal(size=layer.top_shapes[0])])


# --- Softmax -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,axis", [((4, 10), 1), ((2, 5, 3, 4), 1), ((2, 5, 3, 4), 2),
                                        ((2, 3, 4), -1), ((3, 4), 0), ((6, 1), 1)])
def test_softmax(gpu_device, shape, axis):
    x = np.random.default_rng(0).normal(size=shape) * 4
    check_parity(build("Softmax", {"axis": axis}, [shape]), [x], gpu_device)


def test_softmax_large_inputs_are_stable(gpu_device):
    x = np.array([[1000.0, 1000.0, -1000.0], [-80.0, 0.0, 80.0]])
    cpu, _ = check_parity(build("Softmax", {}, [x.shape]), [x], gpu_device)
    np.testing.assert_allclose(cpu.top[0][0], [0.5, 0.5, 0.0])


def test_softmax_graph_replay(gpu_device):
    rng = np.random.default_rng(4)
    layer = build("Softmax", {"axis": 1}, [(2, 4, 3)])
    check_graph_replay(layer, [rng.normal(size=(2, 4, 3))], gpu_device,
                       [rng.normal(size=(2, 4, 3)) * 3], new_top_diffs=[rng.normal(size=(2, 4, 3))])


# --- SoftmaxWithLoss ---------------------------------------------------------------------------
def loss_data(shape, axis=1, seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    label_shape = shape[:axis] + shape[axis + 1:]
    label = labels(rng, shape[axis], label_shape)
    if ignore is not None:
        label.reshape(-1)[::3] = ignore
    return rng.normal(size=shape) * 3, label


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, 2, -1, 255])
def test_softmax_loss_normalizations(gpu_device, mode, ignore):
    x, label = loss_data((3, 4, 2, 3), ignore=ignore)  # spatial: a label per pixel
    layer = build("SoftmaxWithLoss", {"normalization": mode, "ignore_label": ignore},
                  [x.shape, label.shape])
    check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])


@pytest.mark.parametrize("normalize", [True, False])
def test_softmax_loss_legacy_normalize(gpu_device, normalize):
    x, label = loss_data((5, 3), ignore=1)
    layer = build("SoftmaxWithLoss", {"normalize": normalize, "ignore_label": 1},
                  [x.shape, label.shape])
    check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])


@pytest.mark.parametrize("weight", [1.0, 2.5, -0.3, 0.0])
def test_softmax_loss_weight_is_the_top_diff(gpu_device, weight):
    x, label = loss_data((4, 6))
    layer = build("SoftmaxWithLoss", {}, [x.shape, label.shape])
    cpu, _ = check_parity(layer, [x, label], gpu_device, propagate_down=[True, False],
                          top_diffs=[np.array(weight)])
    assert cpu.top_diff[0] == np.float32(weight)


@pytest.mark.parametrize("shape,axis,params", [
    ((2, 3, 4, 5), 1, {"ignore_label": 0}),
    ((2, 3, 4), 2, {"normalization": "BATCH_SIZE"}),
    ((3, 7, 2), -1, {"normalization": "FULL"}),
    ((1, 1000), 1, {}),
])
def test_softmax_loss_axes_and_sizes(gpu_device, shape, axis, params):
    x, label = loss_data(shape, axis % len(shape), seed=5)
    layer = build("SoftmaxWithLoss", dict(params, axis=axis), [x.shape, label.shape])
    check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])


def test_softmax_loss_probability_top_and_tiny_probabilities(gpu_device):
    x = np.array([[0.0, 200.0], [1.0, 1.0], [-3.0, 3.0]])
    label = np.array([0.0, 1.0, 1.0])
    layer = with_tops("SoftmaxWithLoss", {}, [x.shape, label.shape], 2)
    cpu, _ = check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])
    assert np.isfinite(cpu.top[0]).all()  # FLT_MIN keeps log(0) finite


def test_softmax_loss_all_ignored(gpu_device):
    x, label = np.zeros((2, 3)), np.full(2, 5.0)
    layer = build("SoftmaxWithLoss", {"ignore_label": 5}, [x.shape, label.shape])
    cpu, gpu = check_parity(layer, [x, label], gpu_device, propagate_down=[True, False])
    assert float(gpu_device.to_host(gpu.top[0])) == 0.0
    assert not gpu_device.to_host(gpu.bottom_diff[0]).any()


def test_softmax_loss_label_out_of_range_is_nan_on_the_gpu(gpu_device):
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


def test_softmax_loss_graph_replay(gpu_device):
    """A new loss weight and new labels take effect on replay: both are read on the device."""
    x, label = loss_data((4, 5, 3), ignore=0, seed=6)
    x2, label2 = loss_data((4, 5, 3), ignore=0, seed=7)
    layer = build("SoftmaxWithLoss", {"ignore_label": 0}, [x.shape, label.shape])
    check_graph_replay(layer, [x, label], gpu_device, [x2, label2], top_diffs=[np.array(1.0)],
                       new_top_diffs=[np.array(3.0)], propagate_down=[True, False])


# --- Accuracy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("top_k", [1, 5])
@pytest.mark.parametrize("ignore", [None, 3])
@pytest.mark.parametrize("n_tops", [1, 2])
def test_accuracy(gpu_device, top_k, ignore, n_tops):
    rng = np.random.default_rng(top_k)
    x, label = rng.normal(size=(40, 8)), labels(rng, 8, (40,))
    if ignore is not None:
        label[::4] = ignore
    layer = with_tops("Accuracy", {"top_k": top_k, "ignore_label": ignore}, [x.shape, label.shape],
                      n_tops)
    check_parity(layer, [x, label], gpu_device)


@pytest.mark.parametrize("top_k", [1, 2, 5])
def test_accuracy_ties_count_against(gpu_device, top_k):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 3, size=(50, 6)).astype(np.float64)  # many equal scores
    label = labels(rng, 6, (50,))
    layer = with_tops("Accuracy", {"top_k": top_k}, [x.shape, label.shape], 2)
    cpu, _ = check_parity(layer, [x, label], gpu_device)
    assert 0 < float(cpu.top[0]) < 1


def test_accuracy_spatial_and_axis(gpu_device):
    rng = np.random.default_rng(10)
    x, label = rng.normal(size=(2, 5, 3, 4)), labels(rng, 5, (2, 1, 3, 4))
    layer = with_tops("Accuracy", {"top_k": 2, "ignore_label": 4}, [x.shape, label.shape], 2)
    check_parity(layer, [x, label], gpu_device)
    x, label = rng.normal(size=(3, 4, 6)), labels(rng, 6, (3, 4))
    check_parity(build("Accuracy", {"axis": 2}, [x.shape, label.shape]), [x, label], gpu_device)


def test_accuracy_all_ignored_and_empty_classes(gpu_device):
    x, label = np.random.default_rng(11).normal(size=(4, 5)), np.array([1.0, 1.0, 2.0, 2.0])
    layer = with_tops("Accuracy", {}, [x.shape, label.shape], 2)
    check_parity(layer, [x, label], gpu_device)  # classes 0, 3, 4 have no label: 0
    layer = build("Accuracy", {"ignore_label": 7}, [x.shape, label.shape])
    cpu, _ = check_parity(layer, [x, np.full(4, 7.0)], gpu_device)
    assert float(cpu.top[0]) == 0.0


def test_accuracy_graph_replay(gpu_device):
    rng = np.random.default_rng(12)
    layer = with_tops("Accuracy", {"top_k": 2}, [(30, 6), (30,)], 2)
    check_graph_replay(layer, [rng.normal(size=(30, 6)), labels(rng, 6, (30,))], gpu_device,
                       [rng.normal(size=(30, 6)), labels(rng, 6, (30,))])
