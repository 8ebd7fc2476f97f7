"""BatchNorm + Scale (+ ReLU) folded into one step: when the compiler folds, what the plan shows,
that the folded layer computes what the three layers compute (forward, backward, statistics),
and that training a folded plan equals training the unfolded one (CPU and the GPU path), for a
plain conv-bn-scale-relu net and a ResNet-style block written in place as Caffe's ResNets are."""

import numpy as np
import pytest

from gpu_check import relative_error
from layer_check import build, check_gradients, make_io, step_blobs
from synthetic import write_project
from test_batch_norm import gpu_parity
from trainnet.layers.base import StepContext
from trainnet.netcfg import load_net_text, load_solver
from trainnet.plan import compile_net, format_plan
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net
from trainnet.solver import solver as solver_module
from trainnet.solver.solver import Solver


# --- the plan ----------------------------------------------------------------------------------

def net_text(*layers: str, shape=(4, 2, 5, 5)) -> str:
    dims = ", ".join(map(str, shape))
    head = [f"  - {{name: in, type: Input, top: [data, label], shape: [{{dim: [{dims}]}}, "
            f"{{dim: [{shape[0]}]}}]}}",
            "  - {name: conv1, type: Convolution, bottom: data, top: conv1, num_output: 3, kernel_size: 3,"
            " bias_term: false, weight_filler: {type: xavier}}"]
    tail = ["  - {name: ip, type: InnerProduct, bottom: out, top: ip, num_output: 3,"
            " weight_filler: {type: xavier}}",
            "  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}"]
    return "name: fuse\nlayer:\n" + "\n".join(head + list(layers) + tail) + "\n"


IN_PLACE = net_text(
    "  - {name: bn_conv1, type: BatchNorm, bottom: conv1, top: conv1}",
    "  - {name: scale_conv1, type: Scale, bottom: conv1, top: conv1, bias_term: true,"
    " param: [{lr_mult: 2, decay_mult: 0}, {lr_mult: 3}]}",
    "  - {name: relu_conv1, type: ReLU, bottom: conv1, top: conv1}",
    "  - {name: flat, type: Flatten, bottom: conv1, top: out}")


def compile_text(text, phase="TRAIN", **kw):
    return compile_net(load_net_text(text, "n.yaml"), phase, **kw)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_batch_norm_scale_relu_become_one_step(phase):
    plan = compile_text(IN_PLACE, phase)
    assert [s.name for s in plan.steps] == ["in", "conv1", "bn_conv1", "flat", "ip", "loss"]
    bn = plan.step("bn_conv1")
    assert bn.fused == ["scale_conv1", "relu_conv1"] and bn.ctx.fused_relu
    assert bn.ctx.folded == (bn.absorbed[0].layer,) and bn.ctx.forward_only == (phase == "TEST")
    assert "fused scale_conv1, relu_conv1; in place" in format_plan(plan)
    # the Scale's blobs stay the Scale's: its names, its multipliers
    slots = [plan.params[u.slot] for u in bn.params]
    assert [s.key for s in slots] == \
        [("bn_conv1", 0), ("bn_conv1", 1), ("bn_conv1", 2), ("scale_conv1", 0), ("scale_conv1", 1)]
    assert [(s.lr_mult, s.decay_mult) for s in slots[3:]] == [(2.0, 0.0), (3.0, 1.0)]
    assert [u.frozen for u in bn.params] == [True] * 3 + [phase == "TEST"] * 2
    assert "shares params" not in format_plan(plan)


def test_weights_keep_their_names_and_layout():
    fused = Net(compile_text(IN_PLACE), rng=np.random.default_rng(0))
    plain = Net(compile_text(IN_PLACE, fuse=False), rng=np.random.default_rng(0))
    assert [(k, v.shape) for k, v in fused.params.named().items()] == \
        [(k, v.shape) for k, v in plain.params.named().items()]
    for k, v in plain.params.named().items():
        np.testing.assert_array_equal(fused.params.named()[k], v)


def test_out_of_place_layers_fold_and_the_middle_blob_goes():
    text = net_text("  - {name: bn, type: BatchNorm, bottom: conv1, top: b}",
                    "  - {name: sc, type: Scale, bottom: b, top: s}",
                    "  - {name: relu, type: ReLU, bottom: s, top: s}",
                    "  - {name: flat, type: Flatten, bottom: s, top: out}")
    plan = compile_text(text, in_place=False)
    bn = plan.step("bn")
    assert bn.fused == ["sc", "relu"] and bn.bottoms == ["conv1"] and bn.tops == ["s"]
    assert plan.blob("b").data is None  # the BatchNorm's own top is never written


@pytest.mark.parametrize("layers,fused", [
    # a Scale with a second bottom (not a learned gamma)
    (["  - {name: bn, type: BatchNorm, bottom: conv1, top: conv1}",
      "  - {name: g, type: Input, top: g, shape: {dim: [3]}}",
      "  - {name: sc, type: Scale, bottom: [conv1, g], top: conv1}",
      "  - {name: flat, type: Flatten, bottom: conv1, top: out}"], []),
    # a scalar scale is no per-channel gamma
    (["  - {name: bn, type: BatchNorm, bottom: conv1, top: conv1}",
      "  - {name: sc, type: Scale, bottom: conv1, top: conv1, num_axes: 0}",
      "  - {name: flat, type: Flatten, bottom: conv1, top: out}"], []),
    # another reader of the BatchNorm's top: a split comes between
    (["  - {name: bn, type: BatchNorm, bottom: conv1, top: b}",
      "  - {name: sc, type: Scale, bottom: b, top: s}",
      "  - {name: other, type: Flatten, bottom: b, top: f}",
      "  - {name: flat, type: Flatten, bottom: s, top: out}"], []),
    # a leaky ReLU stays a step; the Scale still folds
    (["  - {name: bn, type: BatchNorm, bottom: conv1, top: conv1}",
      "  - {name: sc, type: Scale, bottom: conv1, top: conv1}",
      "  - {name: relu, type: ReLU, bottom: conv1, top: conv1, negative_slope: 0.1}",
      "  - {name: flat, type: Flatten, bottom: conv1, top: out}"], ["sc"]),
    # no Scale: a ReLU folds into the BatchNorm alone
    (["  - {name: bn, type: BatchNorm, bottom: conv1, top: conv1}",
      "  - {name: relu, type: ReLU, bottom: conv1, top: conv1}",
      "  - {name: flat, type: Flatten, bottom: conv1, top: out}"], ["relu"]),
    # a ReLU between the two: the ReLU folds, the Scale (reading the ReLU's top) does not
    (["  - {name: bn, type: BatchNorm, bottom: conv1, top: conv1}",
      "  - {name: relu, type: ReLU, bottom: conv1, top: conv1}",
      "  - {name: sc, type: Scale, bottom: conv1, top: conv1}",
      "  - {name: flat, type: Flatten, bottom: conv1, top: out}"], ["relu"]),
])
def test_what_folds(layers, fused):
    plan = compile_text(net_text(*layers))
    assert plan.step("bn").fused == fused
    same_training(net_text(*layers), iterations=2)


def test_fuse_false_folds_nothing():
    plan = compile_text(IN_PLACE, fuse=False)
    assert [s.name for s in plan.steps][2:5] == ["bn_conv1", "scale_conv1", "relu_conv1"]
    assert not any(s.fused for s in plan.steps)


# --- the folded layer ----------------------------------------------------------------------------

def folded(shape, scale_params, relu, **bn_params):
    """A BatchNorm and the context the compiler gives it with a Scale (and a ReLU) folded in."""
    bn = build("BatchNorm", bn_params, [shape])
    scale = build("Scale", scale_params, [shape])
    assert bn.folds(scale)
    return bn, StepContext(fused_relu=relu, folded=(scale,))


def random_params(layer, ctx, rng, C):
    stats = [rng.normal(size=C), rng.uniform(0.5, 2.0, size=C), np.array([1.5])]
    learned = [rng.normal(1.0, 0.5, size=b.shape) for b in step_blobs(layer, ctx)[3:]]
    return stats + learned


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (6, 3)])
@pytest.mark.parametrize("bias_term", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("global_stats", [False, True])
def test_folded_layer_is_the_three_layers(shape, bias_term, relu, global_stats):
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    layer, ctx = folded(shape, {"bias_term": bias_term}, relu, use_global_stats=global_stats,
                        moving_average_fraction=0.7)
    params = random_params(layer, ctx, rng, shape[1])

    chain = [build("BatchNorm", {"use_global_stats": global_stats, "moving_average_fraction": 0.7},
                   [shape]), build("Scale", {"bias_term": bias_term}, [shape])]
    chain += [build("ReLU", {}, [shape])] if relu else []
    ios, bottom = [], x.copy()
    for lay, p in zip(chain, [[q.copy() for q in params[:3]], [q.copy() for q in params[3:]], []]):
        ios.append(make_io(lay, [bottom], params=p))
        lay.forward(ios[-1], CPU)
        bottom = ios[-1].top[0]
    diff = dy.copy()
    for lay, io in reversed(list(zip(chain, ios))):
        io.top_diff[0][...] = diff
        lay.backward(io, CPU)
        diff = io.bottom_diff[0]

    io = make_io(layer, [x.copy()], params=[q.copy() for q in params], ctx=ctx)
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    np.testing.assert_allclose(io.top[0], ios[-1].top[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(io.bottom_diff[0], ios[0].bottom_diff[0], rtol=1e-9, atol=1e-12)
    for got, want in zip(io.param_diff[3:], ios[1].param_diff):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    for got, want in zip(io.params[:3], ios[0].params):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("bias_term", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_folded_layer_gradients(bias_term, relu):
    shape = (3, 2, 2, 3)
    layer, ctx = folded(shape, {"bias_term": bias_term}, relu)
    check_gradients(layer, [np.random.default_rng(1).normal(size=shape)], ctx=ctx)


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (6, 5), (2, 3, 17)])
@pytest.mark.parametrize("bias_term", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("global_stats", [False, True])
def test_folded_layer_gpu_parity(gpu_device, shape, bias_term, relu, global_stats):
    rng = np.random.default_rng(2)
    layer, ctx = folded(shape, {"bias_term": bias_term}, relu, use_global_stats=global_stats)
    gpu_parity(layer, rng.normal(size=shape), random_params(layer, ctx, rng, shape[1]), gpu_device,
               ctx=ctx)


@pytest.mark.parametrize("phase,launches", [("TEST", 1), ("TRAIN", 3)])
def test_gpu_forward_launches(gpu_device, phase, launches):
    """Inference (stored statistics) is one kernel for BatchNorm + Scale + ReLU; training adds
    the per-channel statistics' two stages (partial sums, then one thread per channel)."""
    backend = gpu_device.backend
    if not hasattr(backend, "launches"):
        pytest.skip("launches are counted by the emulated backend")
    plan = compile_text(IN_PLACE, phase, gpu=True)
    net = Net(plan, gpu_device, rng=np.random.default_rng(0))
    i = [s.name for s in plan.steps].index("bn_conv1")
    before = backend.launches
    plan.steps[i].layer.forward(net.ios[i], gpu_device)
    assert backend.launches - before == launches


# --- training: folded equals unfolded --------------------------------------------------------------

PLAIN_NET = """
name: BnNet
layer:
  - {name: data, type: Data, top: [data, label], include: {phase: TRAIN},
     transform_param: {scale: 0.00390625}, source: train-images-idx3-ubyte.gz, batch_size: 16,
     shuffle: true}
  - {name: data, type: Data, top: [data, label], include: {phase: TEST},
     transform_param: {scale: 0.00390625}, source: test-images-idx3-ubyte.gz, batch_size: 32}
  - {name: conv1, type: Convolution, bottom: data, top: conv1, num_output: 4, kernel_size: 3,
     bias_term: false, weight_filler: {type: xavier}}
  - {name: bn_conv1, type: BatchNorm, bottom: conv1, top: conv1}
  - {name: scale_conv1, type: Scale, bottom: conv1, top: conv1, bias_term: true}
  - {name: relu_conv1, type: ReLU, bottom: conv1, top: conv1}
  - {name: pool1, type: Pooling, bottom: conv1, top: pool1, pool: MAX, kernel_size: 2, stride: 2}
  - {name: ip1, type: InnerProduct, bottom: pool1, top: ip1, num_output: 4,
     weight_filler: {type: xavier}}
  - {name: accuracy, type: Accuracy, bottom: [ip1, label], top: accuracy, include: {phase: TEST}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""


def block(name, bottom, top, relu=True):
    """conv, then BatchNorm, Scale and ReLU all in place on its top, as Caffe's ResNets are written."""
    text = f"""
  - {{name: {name}, type: Convolution, bottom: {bottom}, top: {top}, num_output: 4, kernel_size: 3,
     pad: 1, bias_term: false, weight_filler: {{type: msra}}}}
  - {{name: bn_{name}, type: BatchNorm, bottom: {top}, top: {top},
     param: [{{lr_mult: 0}}, {{lr_mult: 0}}, {{lr_mult: 0}}]}}
  - {{name: scale_{name}, type: Scale, bottom: {top}, top: {top}, bias_term: true}}"""
    return text + (f"\n  - {{name: {name}_relu, type: ReLU, bottom: {top}, top: {top}}}" if relu else "")


# The residual sum is a two-bottom Bias over axis 0: y = branch + shortcut, a gradient to both.
RESNET_NET = PLAIN_NET.split("  - {name: conv1")[0] + block("conv1", "data", "conv1") + \
    block("res2a_branch2a", "conv1", "res2a_branch2a") + \
    block("res2a_branch2b", "res2a_branch2a", "res2a_branch2b", relu=False) + """
  - {name: res2a, type: Bias, bottom: [res2a_branch2b, conv1], top: res2a, axis: 0}
  - {name: res2a_relu, type: ReLU, bottom: res2a, top: res2a}
  - {name: pool1, type: Pooling, bottom: res2a, top: pool1, pool: AVE, kernel_size: 2, stride: 2}
  - {name: ip1, type: InnerProduct, bottom: pool1, top: ip1, num_output: 4,
     weight_filler: {type: xavier}}
  - {name: accuracy, type: Accuracy, bottom: [ip1, label], top: accuracy, include: {phase: TEST}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""


def train(solver_path, device, iterations, fuse, monkeypatch):
    monkeypatch.setattr(solver_module, "compile_net", lambda *a, **k: compile_net(*a, fuse=fuse, **k))
    s = Solver(load_solver(solver_path), device)
    losses = []
    while s.iter < iterations:
        s.step_once()
        losses.append(s.losses[-1])
    return s, np.array(losses), s.test_all()


def assert_same(a, b, rtol, what):
    (sa, la, ta), (sb, lb, tb) = a, b
    assert relative_error(la, lb) <= rtol, what
    for key, want in sb.net.params.named_host().items():
        got = sa.net.params.named_host()[key]
        assert relative_error(got, want) <= rtol, f"{what}: {key} differs by {relative_error(got, want):.3g}"
    assert ta["loss"] == pytest.approx(tb["loss"], rel=rtol), what


@pytest.mark.parametrize("net", [PLAIN_NET, RESNET_NET], ids=["conv-bn-scale-relu", "resnet-block"])
def test_training_folded_equals_unfolded(tmp_path, monkeypatch, gpu_device, net):
    solver = write_project(tmp_path, max_iter=100)
    (tmp_path / "net.yaml").write_text(net)
    cpu_fused = train(solver, CPU, 6, True, monkeypatch)
    folds = {s.name: s.fused for s in cpu_fused[0].net.plan.steps if s.fused}
    assert folds["bn_conv1"] == ["scale_conv1", "relu_conv1" if net is PLAIN_NET else "conv1_relu"]
    if net is RESNET_NET:
        assert folds["bn_res2a_branch2a"] == ["scale_res2a_branch2a", "res2a_branch2a_relu"]
        assert folds["bn_res2a_branch2b"] == ["scale_res2a_branch2b"]
    assert all(s.fused for s in cpu_fused[0].test_nets[0].plan.steps if s.type == "BatchNorm")
    cpu_plain = train(solver, CPU, 6, False, monkeypatch)
    assert_same(cpu_fused, cpu_plain, 1e-5, "CPU folded vs unfolded")
    gpu_fused = train(solver, gpu_device, 6, True, monkeypatch)
    gpu_plain = train(solver, gpu_device, 6, False, monkeypatch)
    assert_same(gpu_fused, gpu_plain, 1e-5, "GPU folded vs unfolded")
    assert_same(gpu_fused, cpu_fused, 1e-4, "GPU vs CPU")


def same_training(text, iterations):
    """Forward and backward of a compiled net, folded and not, from the same weights, agree."""
    results = []
    for fuse in (True, False):
        plan = compile_net(load_net_text(text, "n.yaml"), "TRAIN", fuse=fuse)
        net = Net(plan, rng=np.random.default_rng(0))
        rng = np.random.default_rng(1)
        losses = []
        for _ in range(iterations):
            net.data("data")[...] = rng.normal(size=plan.blob("data").shape)
            net.data("label")[...] = rng.integers(0, 3, plan.blob("label").shape)
            losses.append(net.forward_backward())
            net.params.data -= np.float32(0.1) * net.params.diff  # a plain SGD step
        results.append((losses, net.params.data.copy(), net.params.diff.copy()))
    (l0, w0, g0), (l1, w1, g1) = results
    np.testing.assert_allclose(l0, l1, rtol=1e-5)
    assert relative_error(w0, w1) <= 1e-5 and relative_error(g0, g1) <= 1e-5
