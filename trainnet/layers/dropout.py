"""Dropout, inverted as in Caffe: TRAIN ``y = x * mask / (1 - p)``, TEST ``y = x``.

The mask (``uniform >= p``, drawn from the net's generator) goes to the ``mask`` buffer
already multiplied by the train scale, so forward and backward are one multiply each and
backward reads nothing but the mask.  With ``scale_train: false`` the TRAIN pass is unscaled
and TEST multiplies by ``1 - p`` instead (Caffe's option).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.netcfg.common import Strict


class DropoutParams(Strict):
    dropout_ratio: float = Field(0.5, ge=0.0, lt=1.0)
    scale_train: bool = True


@register("Dropout")
class Dropout(Layer):
    Params = DropoutParams
    in_place_ok = True
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        return [bottom_shapes[0]]

    @property
    def train(self) -> bool:
        return self.phase == "TRAIN"

    def buffers(self):
        return {"mask": Buffer(self.top_shapes[0])} if self.train else {}

    def flops(self):
        return math.prod(self.top_shapes[0]) * (2 if self.train else 1)

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
        mask = io.buf["mask"]
        io.rng.random(out=mask, dtype=mask.dtype)
        np.greater_equal(mask, self.p.dropout_ratio, out=mask)
        mask *= train_scale
        np.multiply(x, mask, out=y)

    def backward_cpu(self, io: StepIO):
        dy, dx = io.top_diff[0], io.bottom_diff[0]
        if dx is None:
            return
        if self.train:
            np.multiply(dy, io.buf["mask"], out=dx)
        else:
            np.multiply(dy, self._scales()[1], out=dx)
