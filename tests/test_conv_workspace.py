"""Issue 14: convolution columns are per-call scratch in one workspace every step shares, and
backward recomputes them; a net packed so gives what a net with every buffer apart gives, on the
CPU and on the GPU path."""

import numpy as np
import pytest

from trainnet.plan import compile_net
from trainnet.plan.memory import live_intervals, pack
from trainnet.plan.text import format_plan
from trainnet.runtime.device import CPU
from trainnet.runtime.net import Net

from gpu_check import relative_error
from plan_cases import lenet_with_input, net
from test_plan_memory import assert_no_live_overlap

# two convolutions, a deconvolution between them and a padded one: each step's backward runs
# after the others' have written the workspace
CONVS = """\
name: convs
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [3, 2, 9, 9]}, {dim: [3]}]}
  - {name: conv1, type: Convolution, bottom: data, top: conv1, num_output: 4, kernel_size: 3,
     pad: 1, weight_filler: {type: gaussian, std: 0.3}, bias_filler: {type: gaussian, std: 0.1}}
  - {name: relu1, type: ReLU, bottom: conv1, top: conv1}
  - {name: up, type: Deconvolution, bottom: conv1, top: up, num_output: 3, kernel_size: 2,
     stride: 2, weight_filler: {type: gaussian, std: 0.3}, bias_filler: {type: gaussian, std: 0.1}}
  - {name: conv2, type: Convolution, bottom: up, top: conv2, num_output: 5, kernel_size: 3,
     stride: 2, group: 1, weight_filler: {type: gaussian, std: 0.3}}
  - {name: conv3, type: Convolution, bottom: conv2, top: conv3, num_output: 4, kernel_size: 1,
     weight_filler: {type: gaussian, std: 0.3}, bias_filler: {type: gaussian, std: 0.1}}
  - {name: ip, type: InnerProduct, bottom: conv3, top: ip, num_output: 3,
     weight_filler: {type: gaussian, std: 0.1}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def scratch_names(step):
    return [name for name, buf in step.buffer_decls().items() if buf.scratch]


@pytest.mark.parametrize("gpu", [False, True])
def test_convolutions_share_one_workspace(gpu):
    plan = compile_net(lenet_with_input(16), "TRAIN", gpu=gpu)
    convs = [plan.step(n) for n in ("conv1", "conv2")]
    assert all(s.buffers["col"].offset == plan.workspace_offset for s in convs)
    users = [s for s in plan.steps if scratch_names(s)]   # the convolutions, and on the CPU
    largest = max(sum(s.buffers[n].nbytes for n in scratch_names(s)) for s in users)  # pooling
    assert largest <= plan.workspace_bytes <= largest + 64 * 4
    assert plan.workspace_steps == len(users) == (2 if gpu else 4)
    assert_no_live_overlap(plan)
    apart = compile_net(lenet_with_input(16), "TRAIN", gpu=gpu, reuse_memory=False)
    assert apart.workspace_bytes == 0 and apart.step("conv1").buffers["col"].offset != \
        apart.step("conv2").buffers["col"].offset
    assert_no_live_overlap(apart)


@pytest.mark.parametrize("gpu", [False, True])
def test_training_arena_shrinks_by_about_the_columns(gpu):
    """Against the same plan with each step's scratch kept from its forward to its backward (as
    the columns were before), the arena is smaller by most of the columns beyond the workspace (the
    packing had put some of them where nothing else lived)."""
    plan = compile_net(lenet_with_input(64), "TRAIN", gpu=gpu)
    kept = pack(live_intervals(plan.steps, plan.blobs, plan.backward, plan.seeds, workspace=False))
    scratch = sum(s.buffers[n].nbytes for s in plan.steps for n in scratch_names(s))
    assert scratch > plan.workspace_bytes > 0
    assert kept - plan.arena_bytes >= 0.6 * (scratch - plan.workspace_bytes)
    assert "workspace:" in format_plan(plan)


def run(plan, device, weights, x, label):
    n = Net(plan, device, rng=np.random.default_rng(0))
    for key, value in weights.items():
        n.params.assign(key, value)
    device.upload(n.data("data"), x)
    device.upload(n.data("label"), label)
    loss = n.forward()
    n.backward()
    return loss, {k: device.to_host(v) for k, v in n.params.named(n.params.diff).items()}


def reference():
    cfg = net(CONVS)
    apart = compile_net(cfg, "TRAIN", reuse_memory=False)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 2, 9, 9)).astype(np.float32)
    label = np.array([0, 2, 1], np.float32)
    weights = {k: np.array(v) for k, v in Net(apart, CPU, rng=np.random.default_rng(0))
               .params.named_host().items()}
    return cfg, weights, x, label, run(apart, CPU, weights, x, label)


def test_cpu_recomputed_columns_equal_columns_kept_apart():
    cfg, weights, x, label, (want_loss, want) = reference()
    plan = compile_net(cfg, "TRAIN")
    assert plan.workspace_steps == 4
    for name in ("conv1", "up", "conv2", "conv3"):  # each step's scratch starts the workspace
        step = plan.step(name)
        assert min(step.buffers[n].offset for n in scratch_names(step)) == plan.workspace_offset
    loss, grads = run(plan, CPU, weights, x, label)
    assert loss == want_loss
    for key, g in want.items():
        np.testing.assert_array_equal(grads[key], g, err_msg=key)


def test_gpu_recomputed_columns_match_the_cpu(gpu_device):
    cfg, weights, x, label, (want_loss, want) = reference()
    plan = compile_net(cfg, "TRAIN", gpu=True)
    assert plan.workspace_bytes > 0
    loss, grads = run(plan, gpu_device, weights, x, label)
    assert relative_error(np.float32(loss), np.float32(want_loss)) < 1e-5
    for key, g in want.items():
        assert relative_error(grads[key], g) < 1e-4, key
