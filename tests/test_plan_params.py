"""Pass 7, params layout: parameter slots in one flat arena, and shared parameters."""

import pytest

from trainnet.errors import ConfigError
from trainnet.netcfg import load_net_text
from trainnet.plan import compile_net, format_plan
from trainnet.plan.params import ALIGN_ELEMS

from plan_cases import SHARED, compile_error, lenet_with_input, net


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
