"""Update rules over the flat parameter arena: one vectorized pass per iteration.

Caffe's order: (accumulated gradient) -> clip by global L2 norm -> divide by iter_size ->
regularize (L2 ``+= decay * w``, L1 ``+= decay * sign(w)``, times decay_mult) -> the rule's
own step, written into the gradient -> ``w -= step``.
"""

from __future__ import annotations

import numpy as np

from trainnet.registry import Registry

RULES = Registry("solver type")


def register(name: str):
    def deco(cls):
        cls.type = name
        return RULES.register(name)(cls)
    return deco


def update_rule(name: str) -> type:
    return RULES[name]


class UpdateRule:
    """The template: ``apply`` does the shared steps, subclasses implement ``compute_step``."""

    type = ""
    history_names: tuple[str, ...] = ()

    def __init__(self, cfg, lr_mult: np.ndarray, decay_mult: np.ndarray):
        self.cfg = cfg
        self.lr_mult = lr_mult
        self.decay = (cfg.weight_decay * decay_mult).astype(np.float32)
        self.scratch = np.zeros_like(lr_mult)
        self.history = {name: np.zeros_like(lr_mult) for name in self.history_names}

    def apply(self, w: np.ndarray, g: np.ndarray, rate: float, it: int) -> None:
        cfg, tmp = self.cfg, self.scratch
        if cfg.clip_gradients >= 0:
            norm = float(np.sqrt(np.dot(g, g)))
            if norm > cfg.clip_gradients:
                g *= np.float32(cfg.clip_gradients / norm)
        if cfg.iter_size > 1:
            g *= np.float32(1.0 / cfg.iter_size)
        if cfg.weight_decay:
            if cfg.regularization_type == "L2":
                np.multiply(self.decay, w, out=tmp)
            else:
                np.sign(w, out=tmp)
                tmp *= self.decay
            g += tmp
        self.compute_step(w, g, rate, it)
        w -= g

    def compute_step(self, w: np.ndarray, g: np.ndarray, rate: float, it: int) -> None:
        raise NotImplementedError


@register("SGD")
class SGD(UpdateRule):
    """Momentum SGD; the history holds the lr-scaled step: ``v = mu v + lr lr_mult g``."""

    history_names = ("momentum",)

    def compute_step(self, w, g, rate, it):
        v, tmp = self.history["momentum"], self.scratch
        np.multiply(self.lr_mult, np.float32(rate), out=tmp)
        tmp *= g
        v *= np.float32(self.cfg.momentum)
        v += tmp
        g[...] = v
