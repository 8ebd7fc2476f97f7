"""Pass 8, memory: no two buffers alive at once share bytes, on the CPU and the GPU plans."""

import numpy as np
import pytest

from trainnet.netcfg import NetConfig, load_net
from trainnet.plan import compile_net
from trainnet.plan.memory import WORKSPACE, live_intervals
from trainnet.plan.plan import Region

from plan_cases import LENET, lenet_with_input, net


def assigned_regions(plan):
    """Every live interval of ``plan`` with the region the plan gave it: the shared workspace is
    one, alive the whole pass, and every step's scratch lies inside it (checked here)."""
    out = []
    shared = plan.workspace_bytes > 0
    for iv in live_intervals(plan.steps, plan.blobs, plan.backward, plan.seeds, workspace=shared):
        kind = iv.key[0]
        if iv.key == WORKSPACE:
            region = Region(plan.workspace_offset, (plan.workspace_bytes,), np.uint8)
            assert_scratch_within(plan, region)
        elif kind == "data":
            region = plan.blobs[iv.key[1]].data
        elif kind == "diff":
            region = plan.blobs[iv.key[1]].diff
        else:
            region = plan.steps[iv.key[1]].buffers[iv.key[2]]
        assert region is not None, iv.key
        out.append((iv, region))
    return out


def assert_scratch_within(plan, workspace):
    """Each step's scratch buffers lie in the workspace, side by side."""
    for s in plan.steps:
        scratch = sorted((plan_region.offset, plan_region.offset + plan_region.nbytes)
                         for name, plan_region in s.buffers.items() if s.buffer_decls()[name].scratch)
        assert all(workspace.offset <= lo and hi <= workspace.offset + workspace.nbytes
                   for lo, hi in scratch), s.name
        assert all(hi <= lo for (_, hi), (lo, _) in zip(scratch, scratch[1:])), s.name


def assert_no_live_overlap(plan):
    regions = assigned_regions(plan)
    assert regions
    for iv, region in regions:
        assert region.offset % 64 == 0, iv.key
        assert region.nbytes <= iv.nbytes
        assert region.offset + region.nbytes <= plan.arena_bytes, iv.key
    for i, (a, ra) in enumerate(regions):
        for b, rb in regions[i + 1:]:
            if a.start <= b.end and b.start <= a.end:   # alive at the same time
                assert ra.offset + ra.nbytes <= rb.offset or rb.offset + rb.nbytes <= ra.offset, \
                    f"{a.key} [{a.start}, {a.end}] and {b.key} [{b.start}, {b.end}] share bytes"
    return regions


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_memory_regions_never_overlap_while_live_input_lenet(phase):
    cfg = lenet_with_input()
    plan = compile_net(cfg, phase)
    assert_no_live_overlap(plan)
    assert plan.arena_bytes < plan.arena_bytes_no_reuse
    assert_no_live_overlap(compile_net(cfg, phase, backward=phase == "TEST"))


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_memory_regions_never_overlap_while_live_lenet(phase, mnist_dir, monkeypatch):
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    plan = compile_net(load_net(LENET), phase)
    regions = assert_no_live_overlap(plan)
    keys = {iv.key for iv, _ in regions}
    assert ("data", "conv1") in keys
    if phase == "TRAIN":  # the columns lie in the workspace
        assert WORKSPACE in keys and plan.step("conv1").buffers["col"].offset == plan.workspace_offset
    if phase == "TRAIN":
        assert ("diff", "conv1") in keys and ("diff", "data") not in keys


def chain(n: int = 8, width: int = 256, batch: int = 8) -> NetConfig:
    lines = [f"  - {{name: input, type: Input, top: [data, label], "
             f"shape: [{{dim: [{batch}, {width}]}}, {{dim: [{batch}]}}]}}"]
    prev = "data"
    for k in range(n):
        lines.append(f"  - {{name: ip{k}, type: InnerProduct, bottom: {prev}, top: ip{k}, num_output: {width}}}")
        lines.append(f"  - {{name: relu{k}, type: ReLU, bottom: ip{k}, top: ip{k}}}")
        prev = f"ip{k}"
    lines.append(f"  - {{name: loss, type: SoftmaxWithLoss, bottom: [{prev}, label], top: loss}}")
    return net("name: chain\nlayer:\n" + "\n".join(lines) + "\n", "chain.yaml")


def test_forward_only_chain_keeps_about_two_activations():
    cfg = chain()
    activation = 8 * 256 * 4
    forward = compile_net(cfg, "TRAIN", backward=False)
    training = compile_net(cfg, "TRAIN")
    assert_no_live_overlap(forward)
    assert_no_live_overlap(training)
    assert 2 * activation <= forward.arena_bytes <= 2.5 * activation
    # backward needs every InnerProduct's input and every ReLU's output kept
    assert training.arena_bytes >= 8 * activation
    assert training.arena_bytes >= 4 * forward.arena_bytes
    assert forward.arena_bytes_no_reuse >= 9 * activation


def test_no_reuse_arena_is_the_sum_of_all_buffers():
    cfg = chain(n=3, width=32)
    for backward in (True, False):
        plain = compile_net(cfg, "TRAIN", backward=backward, reuse_memory=False)
        assert plain.arena_bytes == plain.arena_bytes_no_reuse
        regions = assert_no_live_overlap(plain)
        spans = sorted((r.offset, r.offset + iv.nbytes) for iv, r in regions)
        assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))  # all disjoint
        assert spans[-1][1] == plain.arena_bytes_no_reuse
        reused = compile_net(cfg, "TRAIN", backward=backward)
        assert reused.arena_bytes_no_reuse == plain.arena_bytes_no_reuse
        assert reused.arena_bytes < plain.arena_bytes


def lenet_padded_pool() -> NetConfig:
    """LeNet (Input) whose pool1 takes 3x3 windows: a ceil-rounded last window, so the CPU
    pass pads a copy of the bottom."""
    text = LENET.read_text()
    body = text[text.index("  - name: conv1"):].replace(
        "    pool: MAX\n    kernel_size: 2\n", "    pool: MAX\n    kernel_size: 3\n", 1)
    head = ("name: LeNet\nlayer:\n  - {name: input, type: Input, top: [data, label], "
            "shape: [{dim: [8, 1, 28, 28]}, {dim: [8]}]}\n")
    return net(head + body, "lenet_input.yaml")


def synthetic_net(tmp_path) -> NetConfig:
    from synthetic import write_project
    return load_net(write_project(tmp_path).parent / "net.yaml")


@pytest.mark.parametrize("which", ["lenet", "lenet_padded_pool", "synthetic"])
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_gpu_plan_declares_only_the_gpu_passes_buffers(which, phase, tmp_path):
    make = {"lenet": lenet_with_input, "lenet_padded_pool": lenet_padded_pool,
            "synthetic": lambda: synthetic_net(tmp_path)}[which]
    cpu, gpu = compile_net(make(), phase), compile_net(make(), phase, gpu=True)
    assert not cpu.gpu and gpu.gpu
    assert gpu.arena_bytes <= cpu.arena_bytes
    assert_no_live_overlap(gpu)
    pools = [s.name for s in gpu.steps if s.type == "Pooling"]
    assert pools and all("cells" not in gpu.step(p).buffers for p in pools)
    if which == "lenet_padded_pool" and phase == "TRAIN":
        assert "cells" in cpu.step("pool1").buffers  # so the check above means something
    for s in gpu.steps:
        if s.type in ("Softmax", "SoftmaxWithLoss", "Accuracy"):
            assert not {"scale", "valid", "onehot"} & set(s.buffers), s.name


def test_kept_blobs_stay_readable_in_a_packed_plan():
    """``keep`` leaves named blobs live to the end of the pass (value and gradient) in a
    reuse-packed plan: a forward/backward there reads the same as in the unpacked plan."""
    import numpy as np

    from trainnet.runtime.net import Net

    cfg = lenet_with_input(4)
    rng = np.random.default_rng(0)
    data, label = rng.normal(size=(4, 1, 28, 28)), rng.integers(0, 10, size=4)
    packed = compile_net(cfg, "TRAIN", keep=["conv1", "ip1"])
    assert_no_live_overlap(packed)
    open_plan = compile_net(cfg, "TRAIN", reuse_memory=False, in_place=False, fuse=False)
    assert packed.arena_bytes < open_plan.arena_bytes
    nets = [Net(p, rng=np.random.default_rng(1)) for p in (packed, open_plan)]
    for n in nets:
        n.set_input("data", data)
        n.set_input("label", label)
        n.forward_backward()
    for name in ("conv1", "ip1"):
        np.testing.assert_array_equal(nets[0].data(name), nets[1].data(name))
        np.testing.assert_array_equal(nets[0].diff(name), nets[1].diff(name))
    plain = Net(compile_net(cfg, "TRAIN"), rng=np.random.default_rng(1))  # without keep
    plain.set_input("data", data)
    plain.set_input("label", label)
    plain.forward_backward()
    assert not np.array_equal(plain.data("conv1"), nets[1].data("conv1"))


def test_keep_names_an_unknown_blob():
    with pytest.raises(Exception, match="keep: no blob 'nope' in the TRAIN net"):
        compile_net(lenet_with_input(4), "TRAIN", keep=["nope"])
