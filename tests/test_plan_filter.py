"""Pass 1, filter: the include/exclude rules against the net state."""

from trainnet.netcfg import NetState, NetStateRule
from trainnet.plan import compile_net
from trainnet.plan.filter import filter_layers, included, rule_met

from plan_cases import compile_error, names, net


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
