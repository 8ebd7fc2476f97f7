"""Pass 2, splits: a Split after every blob several layers read, with Caffe's names."""

from trainnet.plan import compile_net, format_plan
from trainnet.plan.splits import insert_splits, loss_weighted_tops

from plan_cases import LOSS_ALSO_CONSUMED, names, net


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
