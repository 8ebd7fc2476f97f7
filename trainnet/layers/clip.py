"""Clip: ``y = max(min, min(x, max))``; ``min`` and ``max`` are required, as in Caffe.

Backward reads the bottom: ``dx = dy`` where ``min <= x <= max`` (the bounds included, Caffe's
rule), else 0.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ClipParams(Strict):
    min: float
    max: float


@register("Clip")
class Clip(Neuron):
    Params = ClipParams
    caffe_params = {"clip_param": None}

    def setup(self, bottom_shapes):
        if self.p.min > self.p.max:
            raise self.error(f"min ({self.p.min:g}) is greater than max ({self.p.max:g})")
        self.lo, self.hi = np.float32(self.p.min), np.float32(self.p.max)
        return [bottom_shapes[0]]

    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, backward_only=("inside",))

    def forward_cpu(self, io: StepIO):
        y = np.minimum(io.bottom[0], self.hi, out=io.top[0])
        np.maximum(y, self.lo, out=y)

    def backward_cpu(self, io: StepIO):
        x, inside = self.saved_bottom(io), io.buf["inside"]
        # min <= x <= max exactly where clipping leaves x unchanged: 1.0 there, else 0.0
        np.clip(x, self.lo, self.hi, out=inside)
        np.equal(inside, x, out=inside)
        np.multiply(io.top_diff[0], inside, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "clip_forward", x.size, y, x, self.lo, self.hi, np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        x, dx = self.saved_bottom(io), io.bottom_diff[0]
        io.gpu.launch(KERNELS, "clip_backward", x.size, dx, io.top_diff[0], x, self.lo, self.hi,
                      np.int64(x.size))
