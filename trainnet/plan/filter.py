"""Pass 1: keep the layers whose include/exclude rules admit the net state (Caffe's NetStateRule)."""

from __future__ import annotations

from trainnet.netcfg.common import NetState, NetStateRule
from trainnet.netcfg.net import LayerConfig


def rule_met(rule: NetStateRule, state: NetState) -> bool:
    if rule.phase is not None and rule.phase != state.phase:
        return False
    if rule.min_level is not None and state.level < rule.min_level:
        return False
    if rule.max_level is not None and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    if any(s in state.stage for s in rule.not_stage):
        return False
    return True


def included(layer: LayerConfig, state: NetState) -> bool:
    """Caffe: with include rules, some rule must be met; with exclude rules, none may be."""
    if layer.include:
        return any(rule_met(r, state) for r in layer.include)
    return not any(rule_met(r, state) for r in layer.exclude)


def filter_layers(layers: list[LayerConfig], state: NetState) -> list[LayerConfig]:
    return [l for l in layers if included(l, state)]
