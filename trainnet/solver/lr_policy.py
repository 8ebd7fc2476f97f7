"""Caffe's learning-rate policies, registered by name; each maps (config, iteration) -> rate.

The names and the fields each policy needs are the config's (trainnet.netcfg.lr_policies,
checked when a solver file is read); a policy registered here must be declared there.
"""

from __future__ import annotations

import math
from typing import Callable

from trainnet.netcfg.lr_policies import POLICIES as DECLARED
from trainnet.registry import Registry

RATES = Registry("lr_policy")


def register(name: str):
    def deco(fn):
        if name not in DECLARED.entries:
            raise RuntimeError(f"lr_policy {name!r} is not declared in trainnet.netcfg.lr_policies")
        return RATES.register(name)(fn)
    return deco


def lr_policy(name: str) -> Callable:
    return RATES[name]


def learning_rate(cfg, it: int) -> float:
    return lr_policy(cfg.lr_policy)(cfg, it)


@register("fixed")
def fixed(cfg, it):
    return cfg.base_lr


@register("step")
def step(cfg, it):
    return cfg.base_lr * cfg.gamma ** (it // cfg.stepsize)


@register("exp")
def exp(cfg, it):
    return cfg.base_lr * cfg.gamma ** it


@register("inv")
def inv(cfg, it):
    return cfg.base_lr * (1 + cfg.gamma * it) ** (-cfg.power)


@register("multistep")
def multistep(cfg, it):
    current = sum(1 for v in cfg.stepvalue if it >= v)
    return cfg.base_lr * cfg.gamma ** current


@register("poly")
def poly(cfg, it):
    return cfg.base_lr * (1 - it / cfg.max_iter) ** cfg.power


@register("sigmoid")
def sigmoid(cfg, it):
    return cfg.base_lr * (1 / (1 + math.exp(-cfg.gamma * (it - cfg.stepsize))))
