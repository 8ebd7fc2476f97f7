"""AbsVal: ``y = |x|``; backward ``dy sign(x)`` (sign(0) = 0, as Caffe) reads the bottom."""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


@register("AbsVal")
class AbsVal(Neuron):
    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, backward_only=("sign",))

    def forward_cpu(self, io: StepIO):
        np.abs(io.bottom[0], out=io.top[0])

    def backward_cpu(self, io: StepIO):
        sign = np.sign(self.saved_bottom(io), out=io.buf["sign"])
        np.multiply(io.top_diff[0], sign, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "absval_forward", x.size, y, x, np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        x, dx = self.saved_bottom(io), io.bottom_diff[0]
        io.gpu.launch(KERNELS, "absval_backward", x.size, dx, io.top_diff[0], x, np.int64(x.size))
