"""Log: ``y = log_base(shift + scale x)``, ``base`` -1 meaning e.

Backward reads the bottom: ``dx = dy scale / (ln(base) (shift + scale x))``.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.exp import log_base
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class LogParams(Strict):
    base: float = -1.0
    scale: float = 1.0
    shift: float = 0.0


@register("Log")
class Log(Neuron):
    Params = LogParams
    caffe_params = {"log_param": None}

    def setup(self, bottom_shapes):
        ln_base = log_base(self, self.p.base)
        self.base_scale = np.float32(1 / ln_base)
        self.backward_scale = np.float32(self.p.scale / ln_base)
        return [bottom_shapes[0]]

    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, backward_only=("factor",))

    def forward_cpu(self, io: StepIO):
        y = np.multiply(io.bottom[0], np.float32(self.p.scale), out=io.top[0])
        y += np.float32(self.p.shift)
        np.log(y, out=y)
        if self.base_scale != 1:
            y *= self.base_scale

    def backward_cpu(self, io: StepIO):
        f = np.multiply(self.saved_bottom(io), np.float32(self.p.scale), out=io.buf["factor"])
        f += np.float32(self.p.shift)
        np.reciprocal(f, out=f)
        f *= self.backward_scale
        np.multiply(io.top_diff[0], f, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "log_forward", x.size, y, x, np.float32(self.p.scale),
                      np.float32(self.p.shift), self.base_scale, np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        x, dx = self.saved_bottom(io), io.bottom_diff[0]
        io.gpu.launch(KERNELS, "log_backward", x.size, dx, io.top_diff[0], x,
                      np.float32(self.p.scale), np.float32(self.p.shift), self.backward_scale,
                      np.int64(x.size))
