"""Pass 3, shapes: every blob's shape, and the graph and shape errors it finds."""

import pytest

from trainnet.errors import ConfigError
from trainnet.plan import compile_net

from plan_cases import compile_error, net


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
