"""Caffe's learning-rate policies, registered by name; each maps (config, iteration) -> rate."""

from __future__ import annotations

import math
from typing import Callable

from trainnet.registry import Registry

POLICIES = Registry("lr_policy")


def register(name: str, requires: Callable = lambda cfg: None):
    """``requires(cfg)`` raises ValueError when the policy's own fields are missing."""
    def deco(fn):
        fn.requires = requires
        return POLICIES.register(name)(fn)
    return deco


def lr_policy(name: str) -> Callable:
    return POLICIES[name]


def check_policy(cfg) -> None:
    """Raise ValueError when the policy's fields are missing (step without stepsize ...)."""
    POLICIES[cfg.lr_policy].requires(cfg)


def learning_rate(cfg, it: int) -> float:
    return lr_policy(cfg.lr_policy)(cfg, it)


def _need(field: str, test: Callable, what: str):
    def check(cfg):
        if not test(getattr(cfg, field)):
            raise ValueError(f"lr_policy {cfg.lr_policy} needs {field} {what}")
    return check


@register("fixed")
def fixed(cfg, it):
    return cfg.base_lr


@register("step", _need("stepsize", lambda v: v > 0, "> 0"))
def step(cfg, it):
    return cfg.base_lr * cfg.gamma ** (it // cfg.stepsize)


@register("exp")
def exp(cfg, it):
    return cfg.base_lr * cfg.gamma ** it


@register("inv")
def inv(cfg, it):
    return cfg.base_lr * (1 + cfg.gamma * it) ** (-cfg.power)


@register("multistep", _need("stepvalue", lambda v: len(v) > 0 and list(v) == sorted(v),
                             "(a non-empty, increasing list)"))
def multistep(cfg, it):
    current = sum(1 for v in cfg.stepvalue if it >= v)
    return cfg.base_lr * cfg.gamma ** current


@register("poly", _need("max_iter", lambda v: v > 0, "> 0"))
def poly(cfg, it):
    return cfg.base_lr * (1 - it / cfg.max_iter) ** cfg.power


@register("sigmoid")
def sigmoid(cfg, it):
    return cfg.base_lr * (1 / (1 + math.exp(-cfg.gamma * (it - cfg.stepsize))))
