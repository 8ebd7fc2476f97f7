"""Caffe's lr_policy names and the solver fields each one needs: the config's half of a policy,
checked when a solver file is read (the rates themselves are trainnet.solver.lr_policy's, which
registers one for each name here)."""

from __future__ import annotations

from typing import Callable

from trainnet.registry import Registry

POLICIES = Registry("lr_policy")   # name -> requires(cfg), raising ValueError


def _need(field: str, test: Callable, what: str) -> Callable:
    def check(cfg) -> None:
        if not test(getattr(cfg, field)):
            raise ValueError(f"lr_policy {cfg.lr_policy} needs {field} {what}")
    return check


def _nothing(cfg) -> None:
    pass


for _name, _requires in (
        ("fixed", _nothing),
        ("step", _need("stepsize", lambda v: v > 0, "> 0")),
        ("exp", _nothing),
        ("inv", _nothing),
        ("multistep", _need("stepvalue", lambda v: len(v) > 0 and list(v) == sorted(v),
                            "(a non-empty, increasing list)")),
        ("poly", _need("max_iter", lambda v: v > 0, "> 0")),
        ("sigmoid", _nothing)):
    POLICIES.register(_name)(_requires)


def check_policy(cfg) -> None:
    """Raise KeyError for an unknown policy (naming the known ones), ValueError when the
    policy's fields are missing (step without stepsize ...)."""
    POLICIES[cfg.lr_policy](cfg)
