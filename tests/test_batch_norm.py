"""BatchNorm against Caffe's definition: batch and stored statistics, the running update,
gradients, in place, CPU/GPU parity, user errors, and its statistics in a training net."""

import numpy as np
import pytest
from pydantic import ValidationError

from gpu_check import gpu_io, relative_error
from layer_check import build, check_gradients, make_io, step_blobs
from trainnet.kernels.sources import partial_blocks
from trainnet.layers.base import NO_PLAN, StepContext
from trainnet.errors import ConfigError
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

EPS = 1e-5


def reference_stats(x):
    """Per channel: the mean and biased variance over every axis but 1, by explicit loops."""
    C = x.shape[1]
    mean, var = np.zeros(C), np.zeros(C)
    for c in range(C):
        values = [float(v) for v in np.moveaxis(np.asarray(x, np.float64), 1, 0)[c].reshape(-1)]
        mean[c] = sum(values) / len(values)
        var[c] = sum((v - mean[c]) ** 2 for v in values) / len(values)
    return mean, var


def normalize(x, mean, var, eps=EPS):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)


def zero_stats(C, dtype=np.float64):
    return [np.zeros(C, dtype), np.zeros(C, dtype), np.zeros(1, dtype)]


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5), (3, 2, 7)])
def test_batch_statistics_and_running_update(shape):
    rng = np.random.default_rng(0)
    layer = build("BatchNorm", {"moving_average_fraction": 0.9}, [shape])
    assert not layer.global_stats and [b.learned for b in layer.param_blobs()] == [False] * 3
    io = make_io(layer, [np.zeros(shape)], params=zero_stats(shape[1]))
    m = np.prod(shape) // shape[1]
    want_s, want_mean, want_var = 0.0, np.zeros(shape[1]), np.zeros(shape[1])
    for step in range(2):
        x = rng.normal(2.0, 3.0, size=shape)
        io.bottom[0][...] = x
        layer.forward(io, CPU)
        mean, var = reference_stats(x)
        np.testing.assert_allclose(io.top[0], normalize(x, mean, var), rtol=1e-9, atol=1e-9)
        want_s = 0.9 * want_s + 1
        want_mean = mean + 0.9 * want_mean
        want_var = m / (m - 1) * var + 0.9 * want_var  # Caffe's bias correction
        # f and m/(m-1) are float32, as Caffe's
        np.testing.assert_allclose(io.params[2], [want_s], rtol=1e-6)
        np.testing.assert_allclose(io.params[0], want_mean, rtol=1e-6)
        np.testing.assert_allclose(io.params[1], want_var, rtol=1e-6)


@pytest.mark.parametrize("phase,option,expected", [("TEST", None, True), ("TRAIN", None, False),
                                                   ("TEST", False, False), ("TRAIN", True, True)])
def test_use_global_stats_defaults_to_the_test_phase(phase, option, expected):
    params = {} if option is None else {"use_global_stats": option}
    assert build("BatchNorm", params, [(2, 3)], phase=phase).global_stats is expected


def test_stored_statistics_are_divided_by_the_factor():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 2, 2))
    layer = build("BatchNorm", {"eps": 1e-3}, [x.shape], phase="TEST")
    stats = [np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 4.0]), np.array([2.0])]
    io = make_io(layer, [x], params=[s.copy() for s in stats])
    layer.forward(io, CPU)
    np.testing.assert_allclose(io.top[0], normalize(x, stats[0] / 2, stats[1] / 2, 1e-3), rtol=1e-6)
    for got, want in zip(io.params, stats):  # stored statistics are only read
        np.testing.assert_array_equal(got, want)
    # scale_factor 0 (never trained) gives the factor 0, as in Caffe: mean 0, variance 0
    io = make_io(layer, [x], params=[stats[0], stats[1], np.zeros(1)])
    layer.forward(io, CPU)
    np.testing.assert_allclose(io.top[0], x / np.sqrt(1e-3), rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
def test_gradients_with_batch_statistics(shape):
    x = np.random.default_rng(2).normal(1.0, 2.0, size=shape)
    check_gradients(build("BatchNorm", {}, [shape]), [x])


def test_gradient_with_stored_statistics_in_train():
    """use_global_stats in TRAIN: the statistics are constants, so dx = dy / sqrt(var + eps)."""
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=(3, 2, 2, 2))
    layer = build("BatchNorm", {"use_global_stats": True}, [x.shape])
    stats = [np.array([0.3, -0.2]), np.array([1.5, 0.7]), np.array([0.5])]
    io = make_io(layer, [x], params=stats)
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    var = stats[1] / 0.5
    np.testing.assert_allclose(io.bottom_diff[0], dy / np.sqrt(var.reshape(1, 2, 1, 1) + EPS), rtol=1e-6)


@pytest.mark.parametrize("global_stats", [False, True])
def test_in_place_matches_out_of_place(global_stats):
    """Top and bottom (and their diffs) the same arrays, as a BatchNorm configured in place."""
    rng = np.random.default_rng(4)
    x, dy = rng.normal(size=(3, 4, 2, 3)), rng.normal(size=(3, 4, 2, 3))
    layer = build("BatchNorm", {"use_global_stats": global_stats}, [x.shape])
    stats = [rng.normal(size=4), rng.uniform(0.5, 2, size=4), np.array([1.5])]
    runs = []
    for in_place in (False, True):
        io = make_io(layer, [x.copy()], params=[s.copy() for s in stats])
        if in_place:
            io.top, io.top_diff = io.bottom, io.bottom_diff
        layer.forward(io, CPU)
        io.top_diff[0][...] = dy
        layer.backward(io, CPU)
        runs.append((io.top[0].copy(), io.bottom_diff[0].copy(), [p.copy() for p in io.params]))
    (y0, dx0, p0), (y1, dx1, p1) = runs
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    for a, b in zip(p1, p0):
        np.testing.assert_array_equal(a, b)


def gpu_parity(layer, x, params, device, *, backward=True, passes=2, seed=0, ctx=NO_PLAN):
    """Forward (and backward) ``passes`` times on the CPU and on ``device`` from the same inputs
    and parameters; tops, gradients and the updated statistics agree to 1e-4.  Blobs the layer
    does not learn get no gradient.  Returns the two StepIOs."""
    rng = np.random.default_rng(seed)
    cpu = make_io(layer, [x.astype(np.float32)], params=[np.array(p, np.float32) for p in params],
                  ctx=ctx)
    cpu.param_diff = [np.zeros_like(p) if b.learned else None
                      for p, b in zip(cpu.params, step_blobs(layer, ctx))]
    gpu = gpu_io(layer, device, cpu, seed)
    for _ in range(passes):
        cpu.top_diff[0][...] = rng.normal(size=cpu.top_diff[0].shape)
        device.upload(gpu.top_diff[0], cpu.top_diff[0])
        layer.forward(cpu, CPU)
        layer.forward(gpu, device)
        pairs = [("top", cpu.top, gpu.top), ("statistics", cpu.params, gpu.params)]
        if backward:
            layer.backward(cpu, CPU)
            layer.backward(gpu, device)
            pairs += [("bottom_diff", cpu.bottom_diff, gpu.bottom_diff),
                      ("param_diff", cpu.param_diff, gpu.param_diff)]
        for what, want, got in pairs:
            for i, (w, g) in enumerate(zip(want, got)):
                if w is not None:
                    err = relative_error(device.to_host(g), w)
                    assert err <= 1e-4, f"{what}[{i}]: GPU differs from CPU by {err:.3g}"
    return cpu, gpu


# the last three reduce each channel in several blocks (two stages), or have 300 channels
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 5), (1, 2, 1, 1), (3, 4, 17), (4, 3, 300),
                                   (2, 300, 3), (3, 2, 5, 70)])
@pytest.mark.parametrize("global_stats", [False, True])
def test_gpu_parity(gpu_device, shape, global_stats):
    rng = np.random.default_rng(5)
    C = shape[1]
    layer = build("BatchNorm", {"use_global_stats": global_stats, "moving_average_fraction": 0.8},
                  [shape])
    assert layer.parts == partial_blocks(int(np.prod(shape)) // C, C)
    assert layer.buffers(StepContext(gpu=True))["partials"].shape == (C * layer.parts * 2,)
    stats = [rng.normal(size=C), rng.uniform(0.5, 2, size=C), np.array([1.7])]
    gpu_parity(layer, rng.normal(1.0, 2.0, size=shape), stats, gpu_device)


def test_gpu_parity_forward_only_test_phase(gpu_device):
    rng = np.random.default_rng(6)
    layer = build("BatchNorm", {}, [(2, 3, 4, 4)], phase="TEST")
    ctx = StepContext(forward_only=True)
    assert "xhat" not in layer.buffers(ctx) and "sums" not in layer.buffers(ctx)
    stats = [rng.normal(size=3), rng.uniform(0.5, 2, size=3), np.array([0.0])]
    gpu_parity(layer, rng.normal(size=(2, 3, 4, 4)), stats, gpu_device, backward=False, ctx=ctx)


@pytest.mark.parametrize("params,shape,message", [
    ({}, [(5,)], r"expects a bottom of 2 or more axes \(N, C, ...\), got \(5,\)"),
])
def test_bad_bottom_is_a_clear_error(params, shape, message):
    with pytest.raises(ConfigError, match=message):
        build("BatchNorm", params, shape)


@pytest.mark.parametrize("params", [{"moving_average_fraction": 1.5}, {"eps": -1.0},
                                    {"use_global_stats": "yes"}, {"scale_param": 1}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ValidationError):
        build("BatchNorm", params, [(2, 3)])


NET = """
name: bn
layer:
  - {{name: in, type: Input, top: [data, label], shape: [{{dim: [6, 2, 4, 4]}}, {{dim: [6]}}]}}
  - {{name: conv, type: Convolution, bottom: data, top: conv, num_output: 3, kernel_size: 3,
     weight_filler: {{type: xavier}}}}
  - {{name: bn, type: BatchNorm, bottom: conv, top: bn{bn_param}}}
  - {{name: ip, type: InnerProduct, bottom: bn, top: ip, num_output: 3, weight_filler: {{type: xavier}}}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
"""


def test_statistics_are_not_learned_in_a_net():
    """No gradient, no update, no weight decay: the solver's multipliers are 0 for them; they
    are still parameters by name, so weights files keep them."""
    plan = compile_net(load_net_text(NET.format(bn_param=""), "n.yaml"), "TRAIN")
    bn = plan.step("bn")
    slots = [plan.params[u.slot] for u in bn.params]
    assert [s.key for s in slots] == [("bn", 0), ("bn", 1), ("bn", 2)]
    assert [(s.lr_mult, s.decay_mult, s.learned) for s in slots] == [(0.0, 0.0, False)] * 3
    assert all(u.frozen for u in bn.params) and bn.need_backward
    net = Net(plan, rng=np.random.default_rng(0))
    assert set(net.params.named()) >= {"bn.0", "bn.1", "bn.2"}
    lr, decay = net.params.multipliers()
    for i, slot in enumerate(net.params.slots):
        view = slice(slot.offset, slot.offset + slot.count)
        assert (lr[view] == 0).all() == (not slot.learned) and (decay[view] == 0).all() == (not slot.learned)


AFTER_DATA = """
layer:
  - {name: in, type: Input, top: [data, label], shape: [{dim: [4, 3]}, {dim: [4]}]}
  - {name: bn, type: BatchNorm, bottom: data, top: bn}
  - {name: ip, type: InnerProduct, bottom: bn, top: ip, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def test_a_batch_norm_after_the_data_runs_no_backward():
    """Its statistics are no learnable parameters, so nothing below it asks for a backward."""
    plan = compile_net(load_net_text(AFTER_DATA, "n.yaml"), "TRAIN")
    assert not plan.step("bn").need_backward and plan.step("ip").need_backward


@pytest.mark.parametrize("param,message", [
    (", param: [{lr_mult: 1}]", "parameter 0 holds statistics that BatchNorm updates itself"),
    (", param: [{lr_mult: 0}, {lr_mult: 0}, {lr_mult: 0.5}]", "its lr_mult must be 0, not 0.5"),
])
def test_a_learning_rate_on_the_statistics_is_refused(param, message):
    with pytest.raises(ConfigError, match=message):
        compile_net(load_net_text(NET.format(bn_param=param), "n.yaml"), "TRAIN")


def test_zero_lr_mult_and_any_decay_are_accepted():
    param = ", param: [{lr_mult: 0, decay_mult: 0}, {lr_mult: 0, decay_mult: 1}, {lr_mult: 0}]"
    plan = compile_net(load_net_text(NET.format(bn_param=param), "n.yaml"), "TRAIN")
    assert all(plan.params[u.slot].decay_mult == 0 for u in plan.step("bn").params)


def test_training_updates_statistics_and_test_net_reads_them(tmp_path):
    """A TRAIN pass writes the statistics into the shared weights; the TEST net, sharing them,
    normalizes with them; a weights file keeps them by name."""
    from trainnet.solver import snapshot as snap
    from trainnet.solver.weights import EXACT, load_weights
    cfg = load_net_text(NET.format(bn_param=", moving_average_fraction: 0.5"), "n.yaml")
    train = Net(compile_net(cfg, "TRAIN", reuse_memory=False), rng=np.random.default_rng(0))
    test = Net(compile_net(cfg, "TEST"), params=train.params)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 2, 4, 4)).astype(np.float32)
    for net in (train, test):
        net.data("data")[...] = x
        net.data("label")[...] = rng.integers(0, 3, 6)
    train.forward()
    conv = train.data("conv").astype(np.float64)
    mean, var = reference_stats(conv)
    m = conv.size // conv.shape[1]
    named = train.params.named()
    np.testing.assert_allclose(named["bn.0"], mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(named["bn.1"], var * m / (m - 1), rtol=1e-5)
    np.testing.assert_allclose(named["bn.2"], [1.0])
    test.forward()
    np.testing.assert_allclose(test.data("bn"), normalize(conv, mean, var * m / (m - 1)), rtol=1e-4,
                               atol=1e-5)
    snap.save_weights(tmp_path / "w.safetensors", train.params, "bn", 1)
    fresh = Net(compile_net(cfg, "TEST"), rng=np.random.default_rng(5))
    report = load_weights(tmp_path / "w.safetensors", fresh.params, EXACT)
    assert "bn" in report.loaded_layers and not report.skipped
    np.testing.assert_array_equal(fresh.params.named()["bn.1"], named["bn.1"])


SOLVER_NET = """
name: BnSolver
layer:
  - {name: data, type: Data, top: [data, label], transform_param: {scale: 0.00390625},
     source: train-images-idx3-ubyte.gz, batch_size: 16}
  - {name: conv, type: Convolution, bottom: data, top: conv, num_output: 3, kernel_size: 3,
     weight_filler: {type: xavier}}
  - {name: bn, type: BatchNorm, bottom: conv, top: conv}
  - {name: ip, type: InnerProduct, bottom: conv, top: ip, num_output: 4, weight_filler: {type: xavier}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_the_solver_leaves_statistics_to_forward(tmp_path, solver_type):
    """With momentum, weight decay and clipping, the statistics are what forward wrote: the
    update gives them no gradient, no history and no decay."""
    from synthetic import write_project
    from trainnet.netcfg import load_solver
    from trainnet.solver.solver import Solver
    solver = write_project(tmp_path, max_iter=10)
    text = solver.read_text().replace("weight_decay: 0.0005", "weight_decay: 0.1")
    solver.write_text(text.replace("test_iter: 4", f"type: {solver_type}\nclip_gradients: 1\ntest_iter: 0"))
    (tmp_path / "net.yaml").write_text(SOLVER_NET)
    s = Solver(load_solver(solver), CPU)
    for _ in range(3):
        s.step_once()
    f = np.float32(0.999)
    assert s.net.params.named()["bn.2"][0] == np.float32(np.float32(1 + f) * f + 1)
    store = s.net.params
    for slot in store.slots:
        view = slice(slot.offset, slot.offset + slot.count)
        if not slot.learned:
            assert not store.diff[view].any()
            assert not any(h[view].any() for h in s.rule.history.values())
