"""The update rules, each Caffe's ``ComputeUpdateValue`` on the CPU beside its fused kernel's
name in update.cu; the shared steps (clip, normalize, regularize) and the GPU path are the
template's, in rule_base.py."""

from __future__ import annotations

import numpy as np

from trainnet.solver.rule_base import RULES, UpdateRule, register


def update_rule(name: str) -> type:
    """The rule class registered as solver ``type`` ``name``."""
    return RULES[name]


class _Momentum(UpdateRule):
    history_names = ("momentum",)

    def kernel_constants(self):
        return (np.float32(self.cfg.momentum),)


@register("SGD")
class SGD(_Momentum):
    """Momentum SGD; the history holds the lr-scaled step: ``v = mu v + lr lr_mult g``."""

    kernel = "sgd_update"

    def compute_step(self, w, g, rate, it):
        v = self.history["momentum"]
        step = self.local_rate(rate)
        step *= g
        v *= np.float32(self.cfg.momentum)
        v += step
        g[...] = v


@register("Nesterov")
class Nesterov(_Momentum):
    """Nesterov's accelerated gradient: ``v' = mu v + lr g``; step ``(1 + mu) v' - mu v``."""

    kernel = "nesterov_update"

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


@register("AdaGrad")
class AdaGrad(UpdateRule):
    """``h += g^2``; step ``lr g / (sqrt(h) + delta)``."""

    history_names = ("grad_sq",)
    kernel = "adagrad_update"

    def kernel_constants(self):
        return (np.float32(self.cfg.delta),)

    def compute_step(self, w, g, rate, it):
        h, tmp = self.history["grad_sq"], self.scratch2
        np.multiply(g, g, out=tmp)
        h += tmp
        _scaled_step(g, h, self.cfg.delta, self.local_rate(rate), tmp)


@register("RMSProp")
class RMSProp(UpdateRule):
    """``h = d h + (1 - d) g^2`` with d = rms_decay; step ``lr g / (sqrt(h) + delta)``."""

    history_names = ("grad_sq",)
    kernel = "rmsprop_update"

    def kernel_constants(self):
        return np.float32(self.cfg.rms_decay), np.float32(self.cfg.delta)

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
    kernel = "adadelta_update"

    def kernel_constants(self):
        return np.float32(self.cfg.momentum), np.float32(self.cfg.delta)

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
    kernel = "adam_update"

    def kernel_constants(self):
        return (np.float32(self.cfg.momentum), np.float32(self.cfg.momentum2),
                np.float32(self.cfg.delta))

    def hyper_values(self, rate, it):
        return [rate, self.correction(it)]

    def correction(self, it: int) -> np.float32:
        """The bias correction ``sqrt(1 - beta2^t) / (1 - beta1^t)``, t = it + 1."""
        b1, b2 = float(np.float32(self.cfg.momentum)), float(np.float32(self.cfg.momentum2))
        t = it + 1
        return np.float32(np.sqrt(1 - b2 ** t) / (1 - b1 ** t))

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
        correction = self.correction(it)
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
