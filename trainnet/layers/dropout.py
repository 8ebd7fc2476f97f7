"""Dropout, inverted as in Caffe: TRAIN ``y = x * mask / (1 - p)``, TEST ``y = x``.

The mask (``uniform >= p``) goes to the ``mask`` buffer already multiplied by the train scale,
so forward and backward are one multiply each and backward reads nothing but the mask.  With
``scale_train: false`` the TRAIN pass is unscaled and TEST multiplies by ``1 - p`` instead
(Caffe's option).

The uniforms come from a counter-based generator (Philox4x32-10, ``layers/rng.py`` and
``common.cuh``): element i of pass c draws from counter (i, c) under the layer's key, so the
CPU and the GPU draw identical masks.  The key (drawn from the net's generator when the net is
built) and the pass counter are the layer's state, kept in device memory so that a captured
CUDA graph draws a new mask on each replay; ``get_state``/``set_state`` carry them through
snapshots, so a resumed run drops the same units.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.errors import TrainnetError
from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.rng import PhiloxWork, fill_uniform
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class DropoutParams(Strict):
    dropout_ratio: float = Field(0.5, ge=0.0, lt=1.0)
    scale_train: bool = True


class DropoutState:
    """The generator's key and pass counter, each a (1,) uint64 array on ``device``."""

    def __init__(self, key: np.uint64, device, size: int):
        self.device = device  # None: host arrays, for the CPU
        on_gpu = device is not None and device.is_gpu
        self.key = device.zeros((1,), np.uint64) if on_gpu else np.zeros(1, np.uint64)
        self.counter = device.zeros((1,), np.uint64) if on_gpu else np.zeros(1, np.uint64)
        self._write(self.key, np.array([key], np.uint64))
        self.work: Optional[PhiloxWork] = None if on_gpu else PhiloxWork(size)

    def _write(self, dst, value: np.ndarray) -> None:
        if isinstance(dst, np.ndarray):
            dst[...] = value
        else:
            self.device.upload(dst, value)

    def get_state(self) -> dict[str, np.ndarray]:
        read = (lambda a: a.copy()) if isinstance(self.key, np.ndarray) else self.device.to_host
        return {"key": read(self.key), "counter": read(self.counter)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        missing = {"key", "counter"} - set(state)
        if missing:
            raise TrainnetError(f"dropout state lacks {', '.join(sorted(missing))}")
        for name in ("key", "counter"):
            value = np.asarray(state[name]).reshape(-1)
            if value.size != 1 or value.dtype != np.uint64:
                raise TrainnetError(f"dropout state: {name} must be one uint64, got "
                                    f"{value.size} of {value.dtype}")
            self._write(getattr(self, name), value)


@register("Dropout")
class Dropout(Layer):
    Params = DropoutParams
    caffe_params = {"dropout_param": None}
    in_place_ok = True
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        return [bottom_shapes[0]]

    @property
    def train(self) -> bool:
        return self.phase == "TRAIN"

    def buffers_cpu(self, ctx):
        return {"mask": Buffer(self.top_shapes[0])} if self.train else {}

    def flops(self):
        return math.prod(self.top_shapes[0]) * (2 if self.train else 1)

    def make_state(self, rng: np.random.Generator, device=None) -> Optional[DropoutState]:
        if not self.train:
            return None
        key = rng.integers(0, 2**64, dtype=np.uint64)
        return DropoutState(key, device, math.prod(self.top_shapes[0]))

    def _scales(self) -> tuple[float, float]:
        """(TRAIN multiplier of kept units, TEST multiplier)."""
        keep = 1.0 - self.p.dropout_ratio
        return (1.0 / keep, 1.0) if self.p.scale_train else (1.0, keep)

    def forward_cpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        train_scale, test_scale = self._scales()
        if not self.train:
            np.multiply(x, test_scale, out=y)
            return
        state, mask = io.state, io.buf["mask"]
        fill_uniform(mask, int(state.counter[0]), int(state.key[0]), state.work)
        # the threshold is a float32, as in the kernel: both compare the same two numbers
        np.greater_equal(mask, np.float32(self.p.dropout_ratio), out=mask)
        mask *= train_scale
        np.multiply(x, mask, out=y)
        state.counter += np.uint64(1)

    def backward_cpu(self, io: StepIO):
        dy, dx = io.top_diff[0], io.bottom_diff[0]
        if dx is None:
            return
        if self.train:
            np.multiply(dy, io.buf["mask"], out=dx)
        else:
            np.multiply(dy, self._scales()[1], out=dx)

    def forward_gpu(self, io: StepIO):
        x, y, gpu = io.bottom[0], io.top[0], io.gpu
        train_scale, test_scale = self._scales()
        if not self.train:
            gpu.launch(KERNELS, "dropout_scale", x.size, y, x, np.float32(test_scale),
                       np.int64(x.size))
            return
        state = io.state
        gpu.launch(KERNELS, "dropout_forward", x.size, y, io.buf["mask"], x, state.key,
                   state.counter, np.float32(self.p.dropout_ratio), np.float32(train_scale),
                   np.int64(x.size))
        gpu.launch(KERNELS, "tick_u64", 1, state.counter)

    def backward_gpu(self, io: StepIO):
        dy, dx, gpu = io.top_diff[0], io.bottom_diff[0], io.gpu
        if dx is None:
            return
        if self.train:
            gpu.launch(KERNELS, "dropout_backward", dx.size, dx, dy, io.buf["mask"],
                       np.int64(dx.size))
        else:
            gpu.launch(KERNELS, "dropout_scale", dx.size, dx, dy, np.float32(self._scales()[1]),
                       np.int64(dx.size))
