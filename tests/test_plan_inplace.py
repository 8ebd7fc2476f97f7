"""Pass 5, in place: a layer overwrites its bottom when nothing else needs it."""

import numpy as np

from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net, format_plan
from trainnet.runtime.net import Net


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
