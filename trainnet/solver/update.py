"""Update rules over the flat parameter arena: one vectorized pass per iteration.

Caffe's order: (accumulated gradient) -> clip by global L2 norm -> divide by iter_size ->
regularize (L2 ``+= decay * w``, L1 ``+= decay * sign(w)``, times decay_mult) -> the rule's
own step, written into the gradient -> ``w -= step``.

On a GPU (``to_device``) the same update is at most three launches over the arena
(``apply_gpu``): with clip_gradients, a sum of squares in per-block partials and a one-block
kernel turning it into the clip scale; then the rule's fused kernel (``kernel``, in
``update.cu``), which does every step above in registers.  ``apply_gpu`` is captured into a
CUDA graph once, so its arguments are frozen: what changes per iteration (the rate, Adam's
bias correction) goes into the device array ``hyper`` by ``prepare``, before each replay.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from trainnet.registry import Registry
from trainnet.runtime.device import CPU, Device
from trainnet.runtime.kernels import BLOCK, grid_for, kernel_source

KERNELS = kernel_source(__file__)
RULES = Registry("solver type")
HYPER_SIZE = 4                      # update.cu: HYPER_RATE 0, HYPER_CORRECTION 1
MAX_PARTIALS = 1024                 # blocks of the clip's sum of squares
REGULARIZATION = {"L2": 1, "L1": 2}  # update.cu: REG_L2, REG_L1 (0: no decay)


def register(name: str):
    def deco(cls):
        cls.type = name
        return RULES.register(name)(cls)
    return deco


def update_rule(name: str) -> type:
    return RULES[name]


class UpdateRule(ABC):
    """The template: ``apply`` does the shared steps, subclasses implement ``compute_step``.

    A subclass names its fused GPU kernel (``kernel``) beside ``compute_step``, and the
    constants that kernel takes after the shared arguments (``kernel_constants``).
    """

    type = ""
    history_names: tuple[str, ...] = ()
    kernel = ""

    def __init__(self, cfg, lr_mult: np.ndarray, decay_mult: np.ndarray):
        self.cfg = cfg
        self.device: Device = CPU
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

    def kernel_constants(self) -> tuple:
        """The rule's own arguments of ``kernel``, after the shared ones."""
        return ()

    def hyper_values(self, rate: float, it: int) -> list[float]:
        """What changes per iteration, in ``hyper``'s layout (update.cu's HYPER_*)."""
        return [rate]

    # --- the GPU path ---------------------------------------------------------------------
    def to_device(self, device: Device) -> None:
        """Move lr_mult, decay and the history onto ``device``; allocate ``hyper``."""
        if self.device.is_gpu:
            raise RuntimeError(f"the {self.type} update is on {self.device} already")
        if not device.is_gpu:
            return
        n = self.lr_mult.size

        def put(host):
            array = device.zeros(host.shape, np.float32)
            device.upload(array, host)
            return array

        self.device = device
        self.lr_mult, self.decay = put(self.lr_mult), put(self.decay)
        self.history = {k: put(v) for k, v in self.history.items()}
        self.scratch = self.scratch2 = None
        self.hyper = device.zeros((HYPER_SIZE,), np.float32)
        self._hyper_host = np.zeros(HYPER_SIZE, np.float32)
        self.clip_scale = put(np.ones(1, np.float32))  # stays 1 without clip_gradients
        self.partials = device.zeros((min(grid_for(n, device.backend.max_blocks), MAX_PARTIALS),),
                                     np.float32)
        self.nonfinite = device.zeros(self.partials.shape, np.float32)

    def prepare(self, rate: float, it: int) -> None:
        """Write this iteration's values into ``hyper`` (outside the captured graph)."""
        values = self.hyper_values(rate, it)
        self._hyper_host[:len(values)] = values
        self.device.upload(self.hyper, self._hyper_host)

    def apply_gpu(self, w, g) -> None:
        """Queue the update of ``w`` by ``g`` (both the flat arena); the step is left in ``g``.

        Only kernel launches, with arguments fixed for a CUDA graph; call ``prepare`` first.
        """
        if not self.device.is_gpu:
            raise RuntimeError(f"the {self.type} update is on the CPU: call to_device(gpu) first")
        cfg, gpu, n = self.cfg, self.device.backend, self.lr_mult.size
        if w.shape != self.lr_mult.shape or g.shape != self.lr_mult.shape:
            raise ValueError(f"update of {self.lr_mult.shape} parameters given arrays of shape "
                             f"{w.shape} and {g.shape}")
        if cfg.clip_gradients >= 0:
            gpu.launch_blocks(KERNELS, "update_sum_squares", self.partials.size, BLOCK,
                              self.partials, g, np.int64(n))
            gpu.launch_blocks(KERNELS, "update_clip_scale", 1, BLOCK, self.clip_scale,
                              self.partials, np.float32(cfg.clip_gradients),
                              np.int64(self.partials.size))
        inv_iter = np.float32(1.0 / cfg.iter_size) if cfg.iter_size > 1 else np.float32(1)
        reg = np.int32(REGULARIZATION[cfg.regularization_type] if cfg.weight_decay else 0)
        history = [self.history[k] for k in self.history_names]
        gpu.launch(KERNELS, self.kernel, n, w, g, *history, self.lr_mult, self.decay, self.hyper,
                   self.clip_scale, inv_iter, reg, *self.kernel_constants(), np.int64(n))

    def check_gpu(self, g) -> None:
        """Queue a count of the NaN or infinite values of ``g`` (read by ``finite_gpu``)."""
        self.device.backend.launch_blocks(KERNELS, "update_count_nonfinite", self.nonfinite.size,
                                          BLOCK, self.nonfinite, g, np.int64(g.size))

    def finite_gpu(self) -> bool:
        """Whether the gradient ``check_gpu`` counted was finite (waits for the device)."""
        return not self.device.to_host(self.nonfinite).any()

    # --- the history, for snapshots -------------------------------------------------------
    def history_host(self) -> dict[str, np.ndarray]:
        """The history arrays by name, as host copies (on either device)."""
        return {k: self.device.to_host(v) for k, v in self.history.items()}

    def load_history(self, saved: dict[str, np.ndarray]) -> None:
        """Set every history array from host arrays by name; ValueError names a missing one."""
        for k, v in self.history.items():
            if k not in saved or np.shape(saved[k]) != v.shape:
                raise ValueError(f"history/{k} missing or of another size")
        for k, v in self.history.items():
            self.device.upload(v, np.asarray(saved[k], np.float32))


@register("SGD")
class SGD(UpdateRule):
    """Momentum SGD; the history holds the lr-scaled step: ``v = mu v + lr lr_mult g``."""

    history_names = ("momentum",)
    kernel = "sgd_update"

    def kernel_constants(self):
        return (np.float32(self.cfg.momentum),)

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
    kernel = "nesterov_update"

    def kernel_constants(self):
        return (np.float32(self.cfg.momentum),)

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
    kernel = "adagrad_update"

    def kernel_constants(self):
        return (np.float32(self.cfg.delta),)

    def compute_step(self, w, g, rate, it):
        h, tmp = self.history["grad_sq"], self.scratch2
        np.multiply(g, g, out=tmp)
        h += tmp
        _scaled_step(g, h, self.cfg.delta, self.local_rate(rate), tmp)


@register("RMSProp")
class RMSProp(_NoMomentum):
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
