"""BNLL (binomial normal log likelihood): ``y = log(1 + exp(x))``, the softplus.

Forward is Caffe's stable form, ``x + log(1 + exp(-x))`` for ``x > 0`` else
``log(1 + exp(x))``, written as ``max(x, 0) + log1p(exp(-|x|))`` (log1p keeps the small values
that ``log(1 + .)`` rounds to 0).  Backward reads the bottom: ``dx = dy e / (e + 1)`` with
``e = exp(min(x, 50))``, Caffe's threshold against overflow.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)
THRESHOLD = np.float32(50)  # Caffe's kBNLL_THRESHOLD


@register("BNLL")
class BNLL(Neuron):
    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, "soft")

    def forward_cpu(self, io: StepIO):
        x, y, soft = io.bottom[0], io.top[0], io.buf["soft"]
        np.abs(x, out=soft)
        np.negative(soft, out=soft)
        np.exp(soft, out=soft)
        np.log1p(soft, out=soft)
        np.maximum(x, 0, out=y)
        y += soft

    def backward_cpu(self, io: StepIO):
        e, dx = io.buf["soft"], io.bottom_diff[0]
        np.minimum(self.saved_bottom(io), THRESHOLD, out=e)
        np.exp(e, out=e)
        np.multiply(io.top_diff[0], e, out=dx)  # dx may be dy's memory: read dy once, first
        e += 1
        dx /= e

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "bnll_forward", x.size, y, x, np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        x, dx = self.saved_bottom(io), io.bottom_diff[0]
        io.gpu.launch(KERNELS, "bnll_backward", x.size, dx, io.top_diff[0], x, THRESHOLD,
                      np.int64(x.size))
