"""Swish: ``y = x sigmoid(beta x)``.

As in Caffe, forward keeps ``s = sigmoid(beta x)`` and backward reads it and the top:
``dx = dy (beta y + s (1 - beta y))``.  Neither is the bottom, so the layer runs in place.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import Buffer, StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.layers.sigmoid import sigmoid_into
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class SwishParams(Strict):
    beta: float = 1.0


@register("Swish")
class Swish(Neuron):
    Params = SwishParams
    caffe_params = {"swish_param": None}
    backward_reads_bottom = False
    backward_reads_top = True

    def scratch_cpu(self, ctx):  # the forward needs the sigmoid as scratch
        return {**self.top_scratch(ctx, backward_only=("factor",)), "sigmoid": Buffer(self.top_shapes[0])}

    def scratch_gpu(self, ctx):
        return {} if ctx.forward_only else {"sigmoid": Buffer(self.top_shapes[0])}

    def forward_cpu(self, io: StepIO):
        x, s = io.bottom[0], io.buf["sigmoid"]
        np.multiply(x, np.float32(self.p.beta), out=s)
        sigmoid_into(s, s)
        np.multiply(x, s, out=io.top[0])

    def backward_cpu(self, io: StepIO):
        s, f = io.buf["sigmoid"], io.buf["factor"]
        # beta y + s (1 - beta y) = (1 - s) beta y + s
        np.subtract(1, s, out=f)
        f *= io.top[0]
        f *= np.float32(self.p.beta)
        f += s
        np.multiply(io.top_diff[0], f, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        keep = "sigmoid" in io.buf
        # without a backward the sigmoid is not kept: y stands in for its pointer (never written)
        io.gpu.launch(KERNELS, "swish_forward", x.size, y, io.buf["sigmoid"] if keep else y, x,
                      np.float32(self.p.beta), np.int32(keep), np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        y, dx = io.top[0], io.bottom_diff[0]
        io.gpu.launch(KERNELS, "swish_backward", y.size, dx, io.top_diff[0], y, io.buf["sigmoid"],
                      np.float32(self.p.beta), np.int64(y.size))
