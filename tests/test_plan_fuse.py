"""Pass 6, fuse: an in-place ReLU folded into its producer, and the steps' frozen context."""

import pytest

from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net, format_plan

from plan_cases import INPUT, net


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
