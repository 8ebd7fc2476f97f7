"""The compiler passes, each on its own, and the Net that runs their Plan (CPU, float32)."""

from pathlib import Path

import numpy as np
import pytest

from trainnet.errors import ConfigError
from trainnet.netcfg import NetConfig, NetState, NetStateRule, load_net, load_net_text
from trainnet.plan import compile_net, format_plan
from trainnet.plan.filter import filter_layers, included, rule_met
from trainnet.plan.memory import live_intervals
from trainnet.plan.params import ALIGN_ELEMS
from trainnet.plan.splits import insert_splits, loss_weighted_tops
from trainnet.runtime.net import Net

LENET = Path(__file__).resolve().parents[1] / "configs" / "lenet" / "lenet_train_test.yaml"


def net(text: str, file: str = "x.yaml") -> NetConfig:
    return load_net_text(text, file)


def compile_error(text: str, phase: str = "TRAIN") -> str:
    with pytest.raises(ConfigError) as info:
        compile_net(net(text), phase)
    return str(info.value)


def names(layers) -> list[str]:
    return [l.name for l in layers]


# --- pass 1: filter ------------------------------------------------------------------------------

def state(phase="TRAIN", level=0, stage=()):
    return NetState(phase=phase, level=level, stage=list(stage))


def test_rule_phase():
    assert rule_met(NetStateRule(phase="TRAIN"), state("TRAIN"))
    assert not rule_met(NetStateRule(phase="TRAIN"), state("TEST"))
    assert rule_met(NetStateRule(), state("TEST"))  # an empty rule is always met


def test_rule_levels_are_inclusive():
    rule = NetStateRule(min_level=1, max_level=3)
    assert [rule_met(rule, state(level=k)) for k in range(5)] == [False, True, True, True, False]
    assert rule_met(NetStateRule(max_level=-1), state(level=-1))
    assert not rule_met(NetStateRule(max_level=-1), state(level=0))


def test_rule_stages():
    both = NetStateRule(stage=["a", "b"])
    assert rule_met(both, state(stage=["a", "b", "c"]))
    assert not rule_met(both, state(stage=["a"]))  # every listed stage is needed
    assert not rule_met(NetStateRule(not_stage=["x"]), state(stage=["a", "x"]))
    assert rule_met(NetStateRule(not_stage=["x"]), state(stage=["a"]))
    mixed = NetStateRule(phase="TEST", stage=["a"], not_stage=["b"])
    assert rule_met(mixed, state("TEST", stage=["a"]))
    assert not rule_met(mixed, state("TEST", stage=["a", "b"]))
    assert not rule_met(mixed, state("TRAIN", stage=["a"]))


FILTER_NET = """\
name: filter
layer:
  - {name: always, type: Input, top: a, shape: {dim: [1]}}
  - {name: train_only, type: Input, top: b, shape: {dim: [1]}, include: {phase: TRAIN}}
  - {name: not_test, type: Input, top: c, shape: {dim: [1]}, exclude: {phase: TEST}}
  - name: train_or_deep
    type: Input
    top: d
    shape: {dim: [1]}
    include: [{phase: TRAIN}, {min_level: 2}]
  - {name: deploy, type: Input, top: e, shape: {dim: [1]}, include: {stage: deploy}}
  - {name: not_deploy, type: Input, top: f, shape: {dim: [1]}, exclude: {stage: deploy}}
  - {name: shallow, type: Input, top: g, shape: {dim: [1]}, include: {max_level: 0}}
"""


def test_filter_layers():
    layers = net(FILTER_NET).layer
    assert names(filter_layers(layers, state("TRAIN"))) == \
        ["always", "train_only", "not_test", "train_or_deep", "not_deploy", "shallow"]
    assert names(filter_layers(layers, state("TEST"))) == ["always", "not_deploy", "shallow"]
    assert names(filter_layers(layers, state("TEST", level=2))) == ["always", "train_or_deep", "not_deploy"]
    assert names(filter_layers(layers, state("TEST", stage=["deploy"]))) == ["always", "deploy", "shallow"]
    assert included(layers[0], state("TEST", level=7, stage=["z"]))


def test_compile_filters_by_phase_level_and_stage():
    cfg = net(FILTER_NET)
    assert names(s.cfg for s in compile_net(cfg, "TEST").steps) == ["always", "not_deploy", "shallow"]
    assert names(s.cfg for s in compile_net(cfg, "TEST", level=2, stages=["deploy"]).steps) == \
        ["always", "train_or_deep", "deploy"]


def test_no_layer_left_is_an_error():
    text = "name: n\nlayer:\n  - {name: a, type: Input, top: a, shape: {dim: [1]}, include: {phase: TRAIN}}\n"
    assert compile_error(text, "TEST") == "x.yaml: no layer is included in phase TEST"


# --- pass 2: splits ------------------------------------------------------------------------------

TWO_CONSUMERS = """\
name: split
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 3}
  - {name: ip2, type: InnerProduct, bottom: data, top: ip2, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""


def test_blob_with_two_consumers_gets_one_split():
    layers = net(TWO_CONSUMERS).layer
    out = insert_splits(layers, loss_weighted_tops(layers))
    # Caffe's names: <blob>_<producer>_<top index>_split, its tops ..._split_<copy>
    assert names(out) == ["input", "data_input_0_split", "ip1", "ip2", "loss"]
    split = out[1]
    assert split.type == "Split" and split.bottom == ["data"]
    assert split.top == ["data_input_0_split_0", "data_input_0_split_1"]
    assert split.loss_weight == []
    assert out[2].bottom == ["data_input_0_split_0"] and out[3].bottom == ["data_input_0_split_1"]
    assert out[4].bottom == ["ip1", "label"]  # one consumer each: untouched
    plan = compile_net(net(TWO_CONSUMERS))
    step = plan.step("data_input_0_split")
    assert step.inserted and plan.blobs["data_input_0_split_1"].shape == (4, 6)


def test_split_of_a_later_top_names_its_index():
    """The label is top 1 of the input layer: its split is label_input_1_split."""
    text = TWO_CONSUMERS + "  - {name: acc, type: Accuracy, bottom: [ip2, label], top: acc}\n"
    out = insert_splits(net(text).layer, set())
    assert names(out) == ["input", "data_input_0_split", "label_input_1_split", "ip1", "ip2", "loss",
                          "acc"]
    assert out[2].top == ["label_input_1_split_0", "label_input_1_split_1"]
    assert out[5].bottom == ["ip1", "label_input_1_split_0"]
    assert out[6].bottom == ["ip2", "label_input_1_split_1"]


def test_in_place_chain_gets_no_split():
    text = """\
name: chain
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: drop1, type: Dropout, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""
    layers = net(text).layer
    out = insert_splits(layers, loss_weighted_tops(layers))
    assert out == layers
    plan = compile_net(net(text), fuse=False)
    assert [s.in_place for s in plan.steps] == [[], [], ["ip1"], ["ip1"], [], []]
    assert not any(s.inserted for s in plan.steps)


def test_consumer_after_in_place_reads_through_one_split():
    text = """\
name: chain
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 3}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: acc, type: Accuracy, bottom: [ip1, label], top: acc}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""
    out = insert_splits(net(text).layer, set())
    assert names(out) == ["input", "label_input_1_split", "ip1", "relu1", "ip1_relu1_0_split", "acc",
                          "loss"]
    assert out[3].bottom == out[3].top == ["ip1"]  # relu1 stays in place
    assert out[5].bottom == ["ip1_relu1_0_split_0", "label_input_1_split_0"]
    assert out[6].bottom == ["ip1_relu1_0_split_1", "label_input_1_split_1"]


def test_users_own_split_is_not_reported_as_inserted():
    text = """\
name: own
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 3}
  - {name: ip1_split, type: Split, bottom: ip1, top: [p, q]}
  - {name: loss, type: SoftmaxWithLoss, bottom: [p, label], top: loss}
  - {name: acc, type: Accuracy, bottom: [q, label], top: acc}
"""
    plan = compile_net(net(text))
    assert [(s.name, s.inserted) for s in plan.steps] == [
        ("input", False), ("label_input_1_split", True), ("ip1", False), ("ip1_split", False),
        ("loss", False), ("acc", False)]
    rows = format_plan(plan).splitlines()
    assert "inserted split" in rows[5] and "inserted split" not in rows[7]


LOSS_ALSO_CONSUMED = """\
name: weighted
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 3, loss_weight: 0.25,
     weight_filler: {type: gaussian, std: 0.5}, bias_filler: {type: gaussian, std: 0.5}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""


def test_loss_top_also_consumed_gets_a_split_carrying_the_weight():
    layers = net(LOSS_ALSO_CONSUMED).layer
    assert loss_weighted_tops(layers) == {(1, 0), (2, 0)}
    out = insert_splits(layers, loss_weighted_tops(layers))
    assert names(out) == ["input", "ip1", "ip1_ip1_0_split", "loss"]
    assert out[1].loss_weight == [0.0]                      # moved off the producer ...
    split = out[2]
    assert split.top == ["ip1_ip1_0_split_0", "ip1_ip1_0_split_1"]
    assert split.loss_weight == [0.25, 0.0]                 # ... onto copy 0, as in Caffe
    assert out[3].bottom == ["ip1_ip1_0_split_1", "label"]  # the consumers start at copy 1
    plan = compile_net(net(LOSS_ALSO_CONSUMED))
    weights = {t: w for s in plan.steps for t, w in zip(s.tops, s.loss_weights) if w}
    assert weights == {"ip1_ip1_0_split_0": 0.25, "loss": 1.0}


# --- pass 3: shapes ------------------------------------------------------------------------------

HEAD = """\
name: shapes
layer:
  - name: input
    type: Input
    top: [data, label]
    shape: [{dim: [2, 3, 4, 5]}, {dim: [2]}]
"""


def test_inner_product_shape_chain():
    text = HEAD + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 7}
  - {name: ip_axis, type: InnerProduct, bottom: data, top: ip_axis, num_output: 6, axis: 2}
  - {name: flat, type: Flatten, bottom: ip_axis, top: flat}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 4}
  - {name: ip3, type: InnerProduct, bottom: flat, top: ip3, num_output: 4, transpose: true}
"""
    plan = compile_net(net(text), "TEST")
    shapes = {k: b.shape for k, b in plan.blobs.items()}
    assert shapes["ip1"] == (2, 7) and shapes["ip_axis"] == (2, 3, 6)
    assert shapes["flat"] == (2, 18) and shapes["ip2"] == (2, 4) and shapes["ip3"] == (2, 4)
    slots = {p.key: p.shape for p in plan.params}
    assert slots[("ip1", 0)] == (7, 60) and slots[("ip_axis", 0)] == (6, 20)
    assert slots[("ip2", 0)] == (4, 7) and slots[("ip3", 0)] == (18, 4)
    assert slots[("ip2", 1)] == (4,)


def test_bottom_nothing_produces():
    text = HEAD + "  - name: ip\n    type: InnerProduct\n    bottom: nope\n    top: ip\n    num_output: 2\n"
    assert compile_error(text) == ("x.yaml:7: layer 'ip' (InnerProduct): bottom: bottom 'nope': no layer "
                                   "before it produces it (blobs so far: data, label)")


def test_bottom_produced_only_later_is_an_error():
    text = HEAD + """\
  - {name: relu, type: ReLU, bottom: later, top: r}
  - {name: ip, type: InnerProduct, bottom: data, top: later, num_output: 2}
"""
    assert compile_error(text).startswith("x.yaml:7: layer 'relu' (ReLU): bottom: bottom 'later': ")


def test_top_produced_twice():
    text = HEAD + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: out, num_output: 2}
  - {name: ip2, type: InnerProduct, bottom: data, top: out, num_output: 2}
"""
    assert compile_error(text) == ("x.yaml:8: layer 'ip2' (InnerProduct): top: top 'out' is already "
                                   "produced by an earlier layer (only in-place layers may reuse a blob name)")


def test_layer_that_cannot_run_in_place_may_not_write_its_bottom():
    text = HEAD + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 2}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip1, num_output: 2}
"""
    assert compile_error(text) == ("x.yaml:8: layer 'ip2' (InnerProduct): top: top 'ip1' is also its "
                                   "bottom, but InnerProduct cannot run in place")


def test_arity_errors():
    assert compile_error(HEAD + "  - {name: loss, type: SoftmaxWithLoss, bottom: data, top: loss}\n") == \
        "x.yaml:7: layer 'loss' (SoftmaxWithLoss): expects 2 bottoms, got 1"
    assert compile_error(HEAD + "  - {name: relu, type: ReLU, bottom: data}\n") == \
        "x.yaml:7: layer 'relu' (ReLU): expects 1 top, got 0"
    assert compile_error(HEAD + "  - {name: in2, type: Input, bottom: data, top: x, shape: {dim: [1]}}\n") == \
        "x.yaml:7: layer 'in2' (Input): expects 0 bottoms, got 1"
    assert compile_error(HEAD + "  - {name: acc, type: Accuracy, bottom: [data, label], top: [a, b, c]}\n") == \
        "x.yaml:7: layer 'acc' (Accuracy): expects 1 to 2 tops, got 3"


def test_propagate_down_and_loss_weight_counts_must_match():
    text = HEAD + "  - {name: r, type: ReLU, bottom: data, top: r, propagate_down: [true, false]}\n"
    assert compile_error(text) == \
        "x.yaml:7: layer 'r' (ReLU): propagate_down: has 1 bottoms but 2 propagate_down values"
    text = HEAD + "  - {name: r, type: ReLU, bottom: data, top: r, loss_weight: [1, 2]}\n"
    assert compile_error(text) == "x.yaml:7: layer 'r' (ReLU): loss_weight: has 1 tops but 2 loss_weight values"


def test_convolution_kernel_larger_than_padded_input():
    conv = """\
  - name: conv
    type: Convolution
    bottom: data
    top: conv
    num_output: 2
    kernel_size: 5
"""
    assert compile_error(HEAD + conv) == \
        "x.yaml:7: layer 'conv' (Convolution): kernel 5x5 is larger than the padded input 4x5"
    plan = compile_net(net(HEAD + conv + "    pad: 1\n"), "TEST")  # 6x7 padded: fits
    assert plan.blobs["conv"].shape == (2, 2, 2, 3)
    with pytest.raises(ConfigError) as info:
        compile_net(net(HEAD + conv, "nets/other.yaml"))
    err = info.value
    assert (err.file, err.line, err.layer, err.layer_type) == ("nets/other.yaml", 7, "conv", "Convolution")


# --- pass 4: backward marks ---------------------------------------------------------------------

INPUT = "  - {name: input, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}\n"


def test_data_needs_no_backward_and_first_layer_does_not_propagate_down():
    text = """\
name: conv
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [2, 1, 6, 6]}, {dim: [2]}]}
  - {name: conv1, type: Convolution, bottom: data, top: conv1, num_output: 2, kernel_size: 3}
  - {name: ip, type: InnerProduct, bottom: conv1, top: ip, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""
    plan = compile_net(net(text))
    s = {step.name: step for step in plan.steps}
    assert not s["input"].need_backward
    assert s["conv1"].need_backward and s["conv1"].propagate_down == [False]
    assert s["conv1"].frozen == [False, False]
    assert s["ip"].need_backward and s["ip"].propagate_down == [True]
    assert s["loss"].propagate_down == [True, False]    # never into the label
    assert plan.blobs["data"].diff is None and plan.blobs["label"].diff is None
    assert plan.blobs["conv1"].diff is not None


def test_frozen_first_layer_needs_no_backward():
    text = "name: frozen\nlayer:\n" + INPUT + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5,
     param: [{lr_mult: 0}, {lr_mult: 0}]}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3, param: [{lr_mult: 1}, {lr_mult: 0}]}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""
    plan = compile_net(net(text), fuse=False)
    s = {step.name: step for step in plan.steps}
    assert not s["ip1"].need_backward and s["ip1"].frozen == [True, True]
    assert not s["relu1"].need_backward  # nothing below it learns
    assert s["ip2"].need_backward and s["ip2"].propagate_down == [False]
    assert s["ip2"].frozen == [False, True]
    assert plan.blobs["ip1"].diff is None
    assert "no backward" in format_plan(plan).splitlines()[5]  # the ip1 row


def test_only_some_params_frozen_still_runs_backward():
    text = "name: half\nlayer:\n" + INPUT + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5, param: [{lr_mult: 0}]}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""
    s = compile_net(net(text)).step("ip1")
    assert s.need_backward and s.frozen == [True, False]


def test_propagate_down_false_cuts_the_gradient():
    text = "name: cut\nlayer:\n" + INPUT + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3, propagate_down: [false]}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""
    plan = compile_net(net(text), fuse=False)
    s = {step.name: step for step in plan.steps}
    assert s["ip2"].need_backward and s["ip2"].propagate_down == [False]
    assert not s["relu1"].need_backward and not s["ip1"].need_backward
    assert s["ip1"].frozen == [True, True]
    assert plan.blobs["ip1"].diff is None


def test_branch_reaching_no_loss_has_no_backward():
    text = "name: branch\nlayer:\n" + INPUT + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}
  - {name: ip_side, type: InnerProduct, bottom: ip1, top: side, num_output: 3}
  - {name: acc, type: Accuracy, bottom: [side, label], top: acc}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""
    plan = compile_net(net(text))
    s = {step.name: step for step in plan.steps}
    assert not s["acc"].need_backward and not s["ip_side"].need_backward
    assert s["ip_side"].frozen == [True, True]
    assert s["ip2"].need_backward and s["ip1"].need_backward
    split = s["ip1_ip1_0_split"]
    assert split.need_backward and split.propagate_down == [True]
    assert plan.blobs["side"].diff is None
    assert not s["label_input_1_split"].need_backward
    assert all(not p for st in plan.steps for b, p in zip(st.bottoms, st.propagate_down) if "label" in b)


def test_force_backward_and_forward_only_plans():
    text = "name: fb\nlayer:\n" + INPUT + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}
  - {name: ip_side, type: InnerProduct, bottom: ip1, top: side, num_output: 3}
  - {name: acc, type: Accuracy, bottom: [side, label], top: acc}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""
    plain = compile_net(net(text))
    assert plain.step("ip1").propagate_down == [False] and plain.blobs["data"].diff is None
    # force_backward: gradients reach the net's input (for saliency and the like) ...
    forced = compile_net(net("force_backward: true\n" + text))
    assert forced.step("ip1").need_backward and forced.step("ip1").propagate_down == [True]
    assert forced.blobs["data"].diff is not None
    assert not forced.step("input").need_backward
    assert forced.step("loss").propagate_down == [True, False]  # ... but never the labels
    # a branch whose only reader (Accuracy) has no backward still gets no gradient
    assert not forced.step("acc").need_backward and not forced.step("ip_side").need_backward
    test = compile_net(net(text), "TEST")
    assert not test.backward and not any(s.need_backward for s in test.steps)
    assert all(all(s.frozen) for s in test.steps)
    assert all(b.diff is None for b in test.blobs.values())


# --- pass 6: memory -----------------------------------------------------------------------------

def assigned_regions(plan):
    """Every live interval of ``plan`` with the region the plan gave it."""
    out = []
    for iv in live_intervals(plan.steps, plan.blobs, plan.backward, plan.seeds):
        kind = iv.key[0]
        if kind == "data":
            region = plan.blobs[iv.key[1]].data
        elif kind == "diff":
            region = plan.blobs[iv.key[1]].diff
        else:
            region = plan.steps[iv.key[1]].buffers[iv.key[2]]
        assert region is not None, iv.key
        out.append((iv, region))
    return out


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


def lenet_with_input(batch: int = 8) -> NetConfig:
    """LeNet with its Data layers replaced by one Input layer (no dataset needed)."""
    text = LENET.read_text()
    body = text[text.index("  - name: conv1"):]
    head = (f"name: LeNet\nlayer:\n  - {{name: input, type: Input, top: [data, label], "
            f"shape: [{{dim: [{batch}, 1, 28, 28]}}, {{dim: [{batch}]}}]}}\n")
    return net(head + body, "lenet_input.yaml")


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
    assert ("data", "conv1") in keys and ("buf", plan.step("conv1").index, "col") in keys
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


# --- pass 5: parameter layout -------------------------------------------------------------------

SHARED = """\
name: shared
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [3, 4]}, {dim: [3]}]}
  - name: ipA
    type: InnerProduct
    bottom: data
    top: a
    num_output: 4
    param: [{name: shared}, {lr_mult: 2}]
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: gaussian, std: 0.5}
  - {name: reluA, type: ReLU, bottom: a, top: a}
  - name: ipB
    type: InnerProduct
    bottom: a
    top: b
    num_output: 4
    param: [{name: shared}]
    bias_filler: {type: gaussian, std: 0.5}
  - name: ipC
    type: InnerProduct
    bottom: b
    top: c
    num_output: 3
    weight_filler: {type: gaussian, std: 0.5}
  - {name: loss, type: SoftmaxWithLoss, bottom: [c, label], top: loss}
"""


def test_param_slots_aligned_and_disjoint():
    plan = compile_net(lenet_with_input(), "TRAIN")
    assert [p.key for p in plan.params] == [(n, j) for n in ("conv1", "conv2", "ip1", "ip2") for j in (0, 1)]
    assert plan.param_count == 431080
    ends = 0
    for slot in plan.params:
        assert slot.offset * 4 % 64 == 0  # float32 elements on 64-byte boundaries
        assert slot.offset >= ends
        ends = slot.offset + slot.count
    assert ends <= plan.param_arena and plan.param_arena % ALIGN_ELEMS == 0
    assert plan.shadow_arena == 0
    assert [p.lr_mult for p in plan.params] == [1.0, 2.0] * 4
    conv1 = plan.step("conv1")
    assert [plan.params[u.slot].shape for u in conv1.params] == [(20, 1, 5, 5), (20,)]


def test_shared_param_gets_one_slot():
    plan = compile_net(net(SHARED))
    keys = [p.key for p in plan.params]
    assert keys == [("ipA", 0), ("ipA", 1), ("ipB", 1), ("ipC", 0), ("ipC", 1)]
    a, b = plan.step("ipA").params, plan.step("ipB").params
    assert a[0].slot == b[0].slot == 0
    assert b[0].shadow == 0 and a[0].shadow is None  # the non-owner's gradient goes to a shadow
    assert plan.shadow_arena == ALIGN_ELEMS
    assert "shares params" in format_plan(plan)


def test_sharing_with_a_shape_mismatch_is_an_error():
    text = SHARED.replace("    top: b\n    num_output: 4\n", "    top: b\n    num_output: 5\n")
    assert compile_error(text) == ("x.yaml:13: layer 'ipB' (InnerProduct): param: shares parameter "
                                   "'shared' of shape (4, 4) from layer 'ipA' but needs (5, 4)")


def test_permissive_sharing_needs_only_the_same_count():
    text = """\
name: permissive
layer:
  - {name: input, type: Input, top: [x, z], shape: [{dim: [3, 8]}, {dim: [3, 2]}]}
  - {name: ipA, type: InnerProduct, bottom: x, top: a, num_output: 2, param: {name: w}}
  - {name: ipB, type: InnerProduct, bottom: z, top: b, num_output: 8, param: {name: w, share_mode: MODE}}
"""
    plan = compile_net(net(text.replace("MODE", "PERMISSIVE")), "TEST")  # (2, 8) and (8, 2)
    assert [p.key for p in plan.params] == [("ipA", 0), ("ipA", 1), ("ipB", 1)]
    assert plan.step("ipB").params[0].slot == 0
    assert compile_error(text.replace("MODE", "STRICT"), "TEST") == \
        ("x.yaml:5: layer 'ipB' (InnerProduct): param: shares parameter 'w' of shape (2, 8) "
         "from layer 'ipA' but needs (8, 2)")


# --- the Net: gradients against central differences ---------------------------------------------

TINY = """\
name: tiny
layer:
  - {name: input, type: Input, top: [data, label], shape: [{dim: [5, 6]}, {dim: [5]}]}
  - name: ip1
    type: InnerProduct
    bottom: data
    top: ip1
    num_output: 7
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: gaussian, std: 0.5}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: ip2
    num_output: 4
    weight_filler: {type: gaussian, std: 0.5}
    bias_filler: {type: gaussian, std: 0.5}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""

EPS = 1e-2


def make_net(cfg: NetConfig, seed: int = 0):
    plan = compile_net(cfg, "TRAIN")
    rng = np.random.default_rng(seed)
    nt = Net(plan, rng=np.random.default_rng(seed))
    shapes = {t: plan.blobs[t].shape for t in plan.steps[0].tops}
    x = rng.normal(size=shapes["data"]).astype(np.float32)
    y = rng.integers(0, 3, size=shapes["label"]).astype(np.float32)
    return nt, x, y


def run(nt: Net, x, y, backward: bool = False) -> float:
    """Write the inputs (the arena may reuse their bytes) and run a pass."""
    nt.data("data")[...] = x
    nt.data("label")[...] = y
    return nt.forward_backward() if backward else nt.forward()


def numeric_gradients(nt: Net, x, y) -> dict[str, np.ndarray]:
    """Central differences of the loss for every element of every parameter slot."""
    out = {}
    for key, value in nt.params.named().items():
        grad = np.zeros(value.shape, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            old = float(value[idx])
            value[idx] = old + EPS
            up = run(nt, x, y)
            value[idx] = old - EPS
            down = run(nt, x, y)
            value[idx] = old
            grad[idx] = (up - down) / (2 * EPS)
        out[key] = grad
    return out


def analytic_gradients(nt: Net, x, y) -> dict[str, np.ndarray]:
    run(nt, x, y, backward=True)
    return {k: np.array(v, dtype=np.float64) for k, v in nt.params.named(nt.params.diff).items()}


def assert_gradients_match(analytic, numeric):
    assert analytic.keys() == numeric.keys()
    for key in analytic:
        scale = max(np.abs(numeric[key]).max(), 1e-2)
        np.testing.assert_allclose(analytic[key], numeric[key], rtol=2e-2, atol=2e-3 * scale,
                                   err_msg=key)


def assert_far_from_relu_kinks(nt: Net, x, layer: str):
    """No pre-activation of ``layer`` (fed by ``x``) is within one finite-difference step of 0,
    else the check would straddle ReLU's kink; holds for the fixed seeds used here."""
    w, b = (nt.params.named()[f"{layer}.{j}"] for j in (0, 1))
    z = x.reshape(len(x), -1) @ w.T + b
    step = EPS * max(np.abs(x).max(), 1.0)  # the most one perturbed weight or bias moves z
    assert np.abs(z).min() > step, "pick another seed: a pre-activation sits at the ReLU kink"


def test_net_gradients_match_finite_differences():
    nt, x, y = make_net(net(TINY), seed=3)
    assert_far_from_relu_kinks(nt, x, "ip1")
    loss = run(nt, x, y)
    assert 0.1 < loss < 10 and np.isfinite(loss)
    analytic = analytic_gradients(nt, x, y)
    assert set(analytic) == {"ip1.0", "ip1.1", "ip2.0", "ip2.1"}
    assert all(np.abs(g).max() > 1e-3 for g in analytic.values())
    assert_gradients_match(analytic, numeric_gradients(nt, x, y))
    # backward overwrites, never accumulates: a second pass gives the same gradients
    again = analytic_gradients(nt, x, y)
    for k in analytic:
        np.testing.assert_array_equal(again[k], analytic[k])


def test_loss_weight_carried_by_split_reaches_the_gradient():
    nt, x, y = make_net(net(LOSS_ALSO_CONSUMED), seed=1)
    loss = run(nt, x, y)
    w, b = (nt.params.named()[f"ip1.{j}"].astype(np.float64) for j in (0, 1))
    scores = x @ w.T + b
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    softmax_loss = -logp[np.arange(len(y)), y.astype(int)].mean()
    assert abs(0.25 * scores.sum()) > 0.1  # the weighted term is not negligible here
    assert loss == pytest.approx(0.25 * scores.sum() + softmax_loss, rel=1e-5)
    assert_gradients_match(analytic_gradients(nt, x, y), numeric_gradients(nt, x, y))


def test_shared_weight_gradient_is_the_sum_of_both_uses():
    shared, x, y = make_net(net(SHARED), seed=5)
    assert_far_from_relu_kinks(shared, x, "ipA")
    analytic = analytic_gradients(shared, x, y)
    assert set(analytic) == {"ipA.0", "ipA.1", "ipB.1", "ipC.0", "ipC.1"}
    assert_gradients_match(analytic, numeric_gradients(shared, x, y))

    # the same net without sharing, both layers given the shared weight: their sum
    separate, _, _ = make_net(net(SHARED.replace("[{name: shared}, {lr_mult: 2}]", "[{}, {lr_mult: 2}]")
                                  .replace("[{name: shared}]", "[{}]")), seed=5)
    for key, value in shared.params.named().items():
        separate.params.named()[key][...] = value
    separate.params.named()["ipB.0"][...] = shared.params.named()["ipA.0"]
    assert run(separate, x, y) == pytest.approx(run(shared, x, y), rel=1e-6)
    parts = analytic_gradients(separate, x, y)
    np.testing.assert_allclose(analytic["ipA.0"], parts["ipA.0"] + parts["ipB.0"], rtol=1e-5, atol=1e-6)
    assert np.abs(parts["ipA.0"]).max() > 1e-3 and np.abs(parts["ipB.0"]).max() > 1e-3
    for key in ("ipA.1", "ipB.1", "ipC.0", "ipC.1"):
        np.testing.assert_allclose(analytic[key], parts[key], rtol=1e-5, atol=1e-6)


# --- the plan as text ---------------------------------------------------------------------------

def test_format_plan_lenet_train(mnist_dir, monkeypatch):
    monkeypatch.setenv("TRAINNET_DATA", str(mnist_dir.parent))
    plan = compile_net(load_net(LENET), "TRAIN")
    text = format_plan(plan)
    lines = text.splitlines()
    assert lines[0] == "net 'LeNet'  phase TRAIN  (forward + backward, 8 steps)"
    rows = {line.split()[1]: line for line in lines[4:4 + len(plan.steps)]}
    assert list(rows) == ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "loss"]
    assert "accuracy" not in text  # TEST only
    assert rows["ip1"].rstrip().endswith("fused relu1")  # the in-place ReLU, in ip1's epilogue
    assert "64x20x24x24" in rows["conv1"] and "64x500" in rows["ip1"]
    assert "no backward" in rows["mnist"] and "loss 1" in rows["loss"]
    assert "in place" not in rows["ip1"]
    unfused = format_plan(compile_net(load_net(LENET), "TRAIN", fuse=False)).splitlines()
    relu = next(line for line in unfused if line.split()[1:2] == ["relu1"])
    assert relu.rstrip().endswith("in place")
    assert "parameters:        431,080 (1.6 MiB)" in lines
    for label in ("activations:       ", "activation arena:  "):
        memory = [l for l in lines if l.startswith(label)]
        assert len(memory) == 1 and "with reuse" in memory[0] and "without" in memory[0]
    assert "outputs:           loss" in lines


def test_format_plan_shows_inserted_splits_and_forward_only():
    text = format_plan(compile_net(lenet_with_input(), "TEST"))
    assert "(forward only, 11 steps)" in text.splitlines()[0]  # relu1 fused into ip1
    assert "inserted split" in text and "label_input_1_split" in text and "ip2_ip2_0_split" in text
    assert "parameters:        431,080 (1.6 MiB)" in text
    assert "outputs:           accuracy, loss" in text


# --- in-place pass ------------------------------------------------------------------------

CHAIN = """
name: chain
layer:
  - {name: in, type: Input, top: [data, label], shape: [{dim: [4, 6]}, {dim: [4]}]}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5,
     weight_filler: {type: gaussian, std: 0.5}, bias_filler: {type: constant, value: 0.1}}
  - {name: relu1, type: ReLU, bottom: ip1, top: relu1}
  - {name: drop1, type: Dropout, bottom: relu1, top: drop1, dropout_ratio: 0.3}
  - {name: ip2, type: InnerProduct, bottom: drop1, top: ip2, num_output: 3,
     weight_filler: {type: gaussian, std: 0.5}}
  - {name: probe, type: Softmax, bottom: ip2, top: prob}
  - {name: relu2, type: ReLU, bottom: prob, top: prob_relu}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""


def test_in_place_pass_renames_tops_and_keeps_aliases():
    from trainnet.plan.inplace import run_in_place  # noqa: F401  (the pass under test)

    plan = compile_net(load_net_text(CHAIN, "chain.yaml"), "TRAIN", fuse=False)
    relu1, drop1 = plan.step("relu1"), plan.step("drop1")
    assert relu1.tops == ["ip1"] and relu1.auto_in_place
    assert plan.blob("relu1") is plan.blobs["ip1"]
    # ReLU's backward reads its top, so the Dropout after it may not overwrite it
    assert drop1.bottoms == ["ip1"] and drop1.tops == ["drop1"] and not drop1.auto_in_place
    assert plan.step("ip2").bottoms == ["drop1"]
    assert plan.aliases == {"relu1": "ip1"}
    # Softmax's backward reads its top, so the ReLU after it must not overwrite it; and a net
    # output keeps its own name.
    assert plan.step("relu2").tops == ["prob_relu"] and not plan.step("relu2").auto_in_place
    assert "in place (auto)" in format_plan(plan)


def test_in_place_pass_changes_no_numbers():
    cfg = load_net_text(CHAIN, "chain.yaml")
    results = []
    for in_place in (True, False):
        net = Net(compile_net(cfg, "TRAIN", in_place=in_place), rng=np.random.default_rng(3))
        net.data("data")[...] = np.random.default_rng(4).normal(size=(4, 6))
        net.data("label")[...] = [0, 1, 2, 1]
        loss = net.forward()
        dropped = np.array(net.data("drop1"))
        net.backward()
        results.append((loss, net.params.diff.copy(), dropped))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_in_place_saves_memory_forward_only():
    cfg = load_net_text(CHAIN.replace("dim: [4, 6]", "dim: [64, 100]").replace("dim: [4]", "dim: [64]")
                        .replace("num_output: 5", "num_output: 300"), "chain.yaml")
    with_pass = compile_net(cfg, "TEST", in_place=True)
    without = compile_net(cfg, "TEST", in_place=False)
    assert with_pass.arena_bytes < without.arena_bytes


def test_sharing_with_another_lr_mult_is_refused():
    text = """
layer:
  - {name: in, type: Input, top: x, shape: {dim: [2, 3]}}
  - {name: a, type: InnerProduct, bottom: x, top: a, num_output: 2, param: [{name: w, lr_mult: 0}]}
  - {name: b, type: InnerProduct, bottom: x, top: b, num_output: 2, param: [{name: w}]}
"""
    with pytest.raises(ConfigError, match=r"g.yaml:5: layer 'b' \(InnerProduct\): param: shares parameter "
                                          r"'w' with layer 'a' but its lr_mult 1 differs from 0"):
        compile_net(load_net_text(text, "g.yaml"), "TRAIN")


# --- fuse pass ----------------------------------------------------------------------------

FUSE = "name: fuse\nlayer:\n" + INPUT + """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""


def test_fuse_folds_an_in_place_relu_into_its_producer():
    plan = compile_net(net(FUSE))
    names = [s.name for s in plan.steps]
    assert "relu1" not in names and plan.step("ip1").fused == ["relu1"]
    ip1 = plan.step("ip1")
    assert ip1.ctx.fused_relu and ip1.layer.reads_top(ip1.ctx) and not ip1.layer.backward_reads_top
    assert [s.index for s in plan.steps] == list(range(len(plan.steps)))
    assert "fused relu1" in format_plan(plan)


@pytest.mark.parametrize("gpu", [False, True])
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_the_passes_set_nothing_on_a_layer(phase, gpu):
    """What the plan decides for a step (forward-only, device, a fused ReLU, a folded Scale, in
    place) is the step's frozen context: every layer keeps exactly what its constructor set."""
    from test_fuse_bn import IN_PLACE

    plan = compile_net(load_net_text(IN_PLACE, "n.yaml"), phase, gpu=gpu)
    bn = plan.step("bn_conv1")
    assert bn.ctx.folded and bn.ctx.fused_relu and bn.ctx.gpu == gpu and bn.ctx.in_place
    assert bn.ctx.forward_only == (phase == "TEST")
    for step in plan.steps + [a for s in plan.steps for a in s.absorbed]:
        layer = step.layer
        fresh = type(layer)(layer.name, layer.p, layer.phase, layer.bottom_shapes,
                            common=layer.common, data_root=layer.data_root)
        assert vars(layer).keys() == vars(fresh).keys(), step.name
    with pytest.raises(AttributeError):
        bn.ctx.fused_relu = False  # frozen


@pytest.mark.parametrize("change", [
    ("{name: relu1, type: ReLU, bottom: ip1, top: ip1}",
     "{name: relu1, type: ReLU, bottom: ip1, top: ip1, negative_slope: 0.1}"),   # a leaky ReLU
    ("{name: relu1, type: ReLU, bottom: ip1, top: ip1}",
     "{name: relu1, type: ReLU, bottom: ip1, top: r1}\n"                        # not in place:
     "  - {name: other, type: InnerProduct, bottom: ip1, top: o, num_output: 2}"),  # ip1 read twice
    ("{name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}",
     "{name: ip1, type: Softmax, bottom: data, top: ip1}"),                      # no epilogue
])
def test_fuse_leaves_other_relus_alone(change):
    plan = compile_net(net(FUSE.replace(*change)))
    assert "relu1" in [s.name for s in plan.steps]
    assert not any(s.fused for s in plan.steps)


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
    assert pools and all("pad" not in gpu.step(p).buffers for p in pools)
    if which == "lenet_padded_pool" and phase == "TRAIN":
        assert "pad" in cpu.step("pool1").buffers  # so the check above means something
    for s in gpu.steps:
        if s.type in ("Softmax", "SoftmaxWithLoss", "Accuracy"):
            assert not {"scale", "valid", "onehot"} & set(s.buffers), s.name


def test_net_refuses_a_plan_compiled_for_the_other_device(gpu_device):
    from trainnet.errors import TrainnetError
    from trainnet.runtime.device import CPU
    with pytest.raises(TrainnetError, match="compiled for a GPU.*gpu=False"):
        Net(compile_net(lenet_with_input(), "TRAIN", gpu=True), CPU)
    with pytest.raises(TrainnetError, match="compiled for the CPU.*gpu=True"):
        Net(compile_net(lenet_with_input(), "TRAIN"), gpu_device)
