"""Update rules over the flat parameter arena: one vectorized pass per iteration.

Caffe's order: (accumulated gradient) -> clip by global L2 norm -> divide by iter_size ->
regularize (L2 ``+= decay * w``, L1 ``+= decay * sign(w)``, times decay_mult) -> the rule's
own step, written into the gradient -> ``w -= step``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

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


class UpdateRule(ABC):
    """The template: ``apply`` does the shared steps, subclasses implement ``compute_step``."""

    type = ""
    history_names: tuple[str, ...] = ()

    def __init__(self, cfg, lr_mult: np.ndarray, decay_mult: np.ndarray):
        self.cfg = cfg
        self.lr_mult = lr_mult
        self.decay = (cfg.weight_decay * decay_mult).astype(np.float32)
        self.scratch = np.zeros_like(lr_mult)
        self.scratch2 = np.zeros_like(lr_mult)
        self.history = {name: np.zeros_like(lr_mult) for name in self.history_names}

    @classmethod
    def check(cls, cfg) -> None:
        """Raise ValueError for settings the rule cannot use (Caffe's CHECKs)."""

    def local_rate(self, rate: float) -> np.ndarray:
        """``rate * lr_mult`` per element, in the scratch buffer."""
        return np.multiply(self.lr_mult, np.float32(rate), out=self.scratch)

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

    @abstractmethod
    def compute_step(self, w: np.ndarray, g: np.ndarray, rate: float, it: int) -> None:
        """Overwrite ``g`` with the step to subtract from ``w`` (``it`` counts from 0)."""


@register("SGD")
class SGD(UpdateRule):
    """Momentum SGD; the history holds the lr-scaled step: ``v = mu v + lr lr_mult g``."""

    history_names = ("momentum",)

    def compute_step(self, w, g, rate, it):
        v = self.history["momentum"]
        step = self.local_rate(rate)
        step *= g
        v *= np.float32(self.cfg.momentum)
        v += step
        g[...] = v


@register("Nesterov")
class Nesterov(UpdateRule):
    """Nesterov's accelerated gradient: ``v' = mu v + lr g``; step ``(1 + mu) v' - mu v``."""

    history_names = ("momentum",)

    def compute_step(self, w, g, rate, it):
        v, mu = self.history["momentum"], np.float32(self.cfg.momentum)
        previous = self.scratch2
        np.copyto(previous, v)
        step = self.local_rate(rate)
        step *= g
        v *= mu
        v += step
        np.multiply(v, np.float32(1) + mu, out=g)
        previous *= mu
        g -= previous


class _NoMomentum(UpdateRule):
    @classmethod
    def check(cls, cfg):
        if cfg.momentum != 0:
            raise ValueError(f"solver type {cls.type} does not use momentum; set momentum: 0")


@register("AdaGrad")
class AdaGrad(_NoMomentum):
    """``h += g^2``; step ``lr g / (sqrt(h) + delta)``."""

    history_names = ("grad_sq",)

    def compute_step(self, w, g, rate, it):
        h, tmp = self.history["grad_sq"], self.scratch2
        np.multiply(g, g, out=tmp)
        h += tmp
        _scaled_step(g, h, self.cfg.delta, self.local_rate(rate), tmp)


@register("RMSProp")
class RMSProp(_NoMomentum):
    """``h = d h + (1 - d) g^2`` with d = rms_decay; step ``lr g / (sqrt(h) + delta)``."""

    history_names = ("grad_sq",)

    def compute_step(self, w, g, rate, it):
        h, tmp, d = self.history["grad_sq"], self.scratch2, np.float32(self.cfg.rms_decay)
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1) - d
        h *= d
        h += tmp
        _scaled_step(g, h, self.cfg.delta, self.local_rate(rate), tmp)


@register("AdaDelta")
class AdaDelta(UpdateRule):
    """Zeiler's AdaDelta with momentum as the decay; Caffe scales the step by the lr too."""

    history_names = ("grad_sq", "update_sq")

    def compute_step(self, w, g, rate, it):
        h, u, tmp = self.history["grad_sq"], self.history["update_sq"], self.scratch2
        mu, delta = np.float32(self.cfg.momentum), np.float32(self.cfg.delta)
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1) - mu
        h *= mu
        h += tmp
        # update = g * sqrt((u + delta) / (h + delta))
        np.add(u, delta, out=tmp)
        h_delta = np.add(h, delta, out=self.scratch)
        np.divide(tmp, h_delta, out=tmp)
        np.sqrt(tmp, out=tmp)
        g *= tmp
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1) - mu
        u *= mu
        u += tmp
        g *= self.local_rate(rate)


@register("Adam")
class Adam(UpdateRule):
    """Kingma & Ba: beta1 = momentum, beta2 = momentum2, epsilon = delta, bias-corrected."""

    history_names = ("m", "v")

    def compute_step(self, w, g, rate, it):
        m, v, tmp = self.history["m"], self.history["v"], self.scratch2
        b1, b2 = np.float32(self.cfg.momentum), np.float32(self.cfg.momentum2)
        m *= b1
        np.multiply(g, np.float32(1) - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1) - b2
        v += tmp
        t = it + 1
        correction = np.float32(np.sqrt(1 - float(b2) ** t) / (1 - float(b1) ** t))
        np.sqrt(v, out=tmp)
        tmp += np.float32(self.cfg.delta)
        np.divide(m, tmp, out=g)
        g *= self.local_rate(rate)
        g *= correction


def _scaled_step(g, h, delta, local_rate, tmp) -> None:
    """``g = local_rate * g / (sqrt(h) + delta)`` in place."""
    np.sqrt(h, out=tmp)
    tmp += np.float32(delta)
    g /= tmp
    g *= local_rate
