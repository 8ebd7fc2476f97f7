"""Pass 4, backward marks: which steps run backward and which bottoms take a gradient."""

from trainnet.plan import compile_net, format_plan

from plan_cases import INPUT, net


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


# ip1 feeds a side branch ending in Accuracy (no loss) and the loss branch
BRANCH = """\
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1, num_output: 5}
  - {name: ip_side, type: InnerProduct, bottom: ip1, top: side, num_output: 3}
  - {name: acc, type: Accuracy, bottom: [side, label], top: acc}
  - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""


def test_branch_reaching_no_loss_has_no_backward():
    text = "name: branch\nlayer:\n" + INPUT + BRANCH
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
    text = "name: fb\nlayer:\n" + INPUT + BRANCH
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
