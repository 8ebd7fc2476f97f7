"""The update rules' template over the flat parameter arena, on the CPU and on a GPU.

``apply`` is Caffe's order (accumulated gradient) -> clip by global L2 norm -> divide by
iter_size -> regularize (L2 ``+= decay * w``, L1 ``+= decay * sign(w)``, times decay_mult) ->
the rule's own step, written into the gradient -> ``w -= step``.  On a GPU (``to_device``)
``apply_gpu`` is at most three launches: with clip_gradients a sum of squares in per-block
partials and a one-block kernel making the clip scale, then the rule's fused kernel
(``kernel``, in update.cu).  It is captured into a CUDA graph once, so its arguments are
frozen: what changes per iteration (the rate, Adam's bias correction) goes into the device
array ``hyper`` (``prepare``).  The rules themselves are in update.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from trainnet.registry import Registry
from trainnet.runtime.device import CPU, Device
from trainnet.kernels.sources import BLOCK, grid_for, kernel_source

KERNELS = kernel_source(__file__, "update.cu")
RULES = Registry("solver type")
HYPER_SIZE = 4                      # update.cu: HYPER_RATE 0, HYPER_CORRECTION 1
MAX_PARTIALS = 1024                 # blocks of the clip's sum of squares
REGULARIZATION = {"L2": 1, "L1": 2}  # update.cu: REG_L2, REG_L1 (0: no decay)


def register(name: str):
    def deco(cls):
        cls.type = name
        return RULES.register(name)(cls)
    return deco


class UpdateRule(ABC):
    """The template: ``apply`` does the shared steps, subclasses implement ``compute_step``,
    name their fused GPU kernel (``kernel``) and the constants it takes after the shared
    arguments (``kernel_constants``)."""

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
        """This iteration's values for ``update``: kept on the CPU; on a GPU written into
        ``hyper``, outside the captured graph."""
        self._now = (rate, it)
        if self.device.is_gpu:
            values = self.hyper_values(rate, it)
            self._hyper_host[:len(values)] = values
            self.device.upload(self.hyper, self._hyper_host)

    def update(self, w, g) -> None:
        """The update of ``w`` by ``g`` with ``prepare``'s values, on the rule's device."""
        if self.device.is_gpu:
            self.apply_gpu(w, g)
        else:
            self.apply(w, g, *self._now)

    def apply_gpu(self, w, g) -> None:
        """Queue the update of ``w`` by ``g`` (both the flat arena); the step is left in ``g``.
        Only kernel launches, with arguments fixed for a CUDA graph; call ``prepare`` first."""
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

    def queue_check(self, g) -> None:
        """On a GPU, queue a count of the NaN or infinite values of ``g`` (inside the captured
        pass; read by ``finite``).  The CPU checks in ``finite`` itself."""
        if self.device.is_gpu:
            self.device.backend.launch_blocks(KERNELS, "update_count_nonfinite", self.nonfinite.size,
                                              BLOCK, self.nonfinite, g, np.int64(g.size))

    def finite(self, g) -> bool:
        """Whether the gradient ``g`` is finite (on a GPU: as ``queue_check`` counted it, waiting
        for the device).  On the CPU a dot product is one fast pass; it overflows only for
        gradients near 1e19, and then the exact test decides."""
        if self.device.is_gpu:
            return not self.device.to_host(self.nonfinite).any()
        return bool(np.isfinite(np.dot(g, g)) or np.isfinite(g).all())

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
