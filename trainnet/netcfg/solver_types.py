"""Caffe's solver types (SolverParameter ``type``) and the settings each one refuses: the
config's half of an update rule, checked when a solver file is read (the rules themselves are
trainnet.solver.update's, one registered for each name here)."""

from __future__ import annotations

from trainnet.registry import Registry

TYPES = Registry("solver type")   # name -> check(cfg), raising ValueError


def _anything(cfg) -> None:
    pass


def _no_momentum(name: str):
    def check(cfg) -> None:
        if cfg.momentum != 0:
            raise ValueError(f"solver type {name} does not use momentum; set momentum: 0")
    return check


for _name, _check in (("SGD", _anything), ("Nesterov", _anything),
                      ("AdaGrad", _no_momentum("AdaGrad")), ("RMSProp", _no_momentum("RMSProp")),
                      ("AdaDelta", _anything), ("Adam", _anything)):
    TYPES.register(_name)(_check)


def check_solver_type(cfg) -> None:
    """Raise KeyError for an unknown type (naming the known ones), ValueError for a setting the
    type cannot use (Caffe's CHECKs: AdaGrad and RMSProp take no momentum)."""
    TYPES[cfg.type](cfg)
