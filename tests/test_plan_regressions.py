"""Graphs where memory reuse, in-place and seeding once went wrong: each must compute exactly
what the same net computes with every blob in memory of its own."""

from __future__ import annotations

import numpy as np
import pytest

from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net
from trainnet.runtime.net import Net


def run(text: str, phase: str, **options):
    plan = compile_net(load_net_text(text, "g.yaml"), phase, **options)
    net = Net(plan, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for s in plan.steps:
        if s.type == "Input":
            for t in s.tops:
                shape = plan.blob(t).shape
                net.data(t)[...] = (rng.integers(0, 3, shape) if t.startswith("label")
                                    else rng.standard_normal(shape))
    loss = net.forward()
    outputs = net.outputs()
    if plan.backward:
        net.backward()
    return loss, outputs, net.params.diff.copy()


def same_as_unshared(text: str, phase: str = "TRAIN"):
    loss, outputs, grads = run(text, phase)
    ref_loss, ref_outputs, ref_grads = run(text, phase, reuse_memory=False, in_place=False)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert outputs.keys() == ref_outputs.keys()
    for k in outputs:
        np.testing.assert_allclose(outputs[k], ref_outputs[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads, ref_grads, rtol=1e-5, atol=1e-6)
    return outputs


TWO_INPUTS = """
layer:
  - {name: data, type: Input, top: data, shape: {dim: [8, 1, 6, 6]}}
  - {name: label, type: Input, top: label, shape: {dim: [8]}}
  - {name: c1, type: Convolution, bottom: data, top: c1, num_output: 3, kernel_size: 3, weight_filler: {type: xavier}}
  - {name: c2, type: Convolution, bottom: data, top: c2, num_output: 3, kernel_size: 5, weight_filler: {type: xavier}}
  - {name: ip1, type: InnerProduct, bottom: c1, top: a, num_output: 3, weight_filler: {type: xavier}}
  - {name: ip2, type: InnerProduct, bottom: c2, top: b, num_output: 3, weight_filler: {type: xavier}}
  - {name: la, type: SoftmaxWithLoss, bottom: [a, label], top: la}
  - {name: lb, type: SoftmaxWithLoss, bottom: [b, label], top: lb}
"""


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_an_input_after_a_split_keeps_what_the_user_wrote(phase):
    same_as_unshared(TWO_INPUTS, phase)


IN_PLACE_OUTPUT = """
{force}
layer:
  - {{name: in, type: Input, top: [x, label], shape: [{{dim: [4, 6]}}, {{dim: [4]}}]}}
  - {{name: ip2, type: InnerProduct, bottom: x, top: a, num_output: 6, weight_filler: {{type: gaussian, std: 1}}}}
  - {{name: la, type: SoftmaxWithLoss, bottom: [a, label], top: la}}
  - {{name: ip1, type: InnerProduct, bottom: x, top: feat, num_output: 6, weight_filler: {{type: gaussian, std: 1}}}}
  - {{name: r, type: ReLU, bottom: feat, top: feat}}
"""


@pytest.mark.parametrize("force", ["", "force_backward: true"])
def test_the_end_of_an_in_place_chain_is_an_output(force):
    outputs = same_as_unshared(IN_PLACE_OUTPUT.format(force=force))
    assert set(outputs) == {"la", "feat"}


SHARED_OWNER_IDLE = """
layer:
  - {name: in, type: Input, top: [x, label], shape: [{dim: [4, 5]}, {dim: [4]}]}
  - {name: owner, type: InnerProduct, bottom: x, top: side, num_output: 3, param: [{name: w}, {name: b}]}
  - {name: user, type: InnerProduct, bottom: x, top: a, num_output: 3, param: [{name: w}, {name: b}],
     weight_filler: {type: gaussian, std: 0.3}}
  - {name: la, type: SoftmaxWithLoss, bottom: [a, label], top: la}
"""


def test_shared_gradient_is_not_accumulated_across_passes():
    plan = compile_net(load_net_text(SHARED_OWNER_IDLE, "g.yaml"), "TRAIN")
    net = Net(plan, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 5))

    def forward_backward():  # inputs are written before every pass: their memory is reused
        net.data("x")[...] = x
        net.data("label")[...] = [0, 1, 2, 1]
        net.forward_backward()

    forward_backward()
    first = net.params.diff.copy()
    for grad in net.params.named(net.params.diff).values():
        grad[...] = 123.0  # what an update step leaves behind
    forward_backward()
    assert np.abs(first).max() > 0
    np.testing.assert_array_equal(net.params.diff, first)
