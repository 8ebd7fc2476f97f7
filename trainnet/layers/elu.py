"""ELU: ``y = x`` where ``x > 0``, else ``alpha (exp(x) - 1)``.

Backward reads only the top, ``dy`` where ``y > 0`` else ``dy (y + alpha)``, which is Caffe's
rule (``x > 0`` exactly where ``y > 0`` when ``alpha >= 0``), so the layer runs in place.  A
negative alpha would break that equivalence and is refused, as ReLU refuses a negative slope.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ELUParams(Strict):
    alpha: float = Field(1.0, ge=0)


@register("ELU")
class ELU(Neuron):
    Params = ELUParams
    caffe_params = {"elu_param": None}
    backward_reads_bottom = False
    backward_reads_top = True

    def scratch_cpu(self, ctx):
        bufs = self.top_scratch(ctx, "negative")
        if not ctx.forward_only:
            bufs["positive"] = Buffer(self.top_shapes[0], np.bool_)
        return bufs

    def forward_cpu(self, io: StepIO):
        x, y, neg = io.bottom[0], io.top[0], io.buf["negative"]
        # max(x, 0) + alpha expm1(min(x, 0)): one of the two terms is 0 for every element
        np.minimum(x, 0, out=neg)
        np.expm1(neg, out=neg)
        neg *= np.float32(self.p.alpha)
        np.maximum(x, 0, out=y)
        y += neg

    def backward_cpu(self, io: StepIO):
        y, f, positive = io.top[0], io.buf["negative"], io.buf["positive"]
        np.greater(y, 0, out=positive)
        np.add(y, np.float32(self.p.alpha), out=f)
        np.copyto(f, 1, where=positive)
        np.multiply(io.top_diff[0], f, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "elu_forward", x.size, y, x, np.float32(self.p.alpha),
                      np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        y, dx = io.top[0], io.bottom_diff[0]
        io.gpu.launch(KERNELS, "elu_backward", y.size, dx, io.top_diff[0], y,
                      np.float32(self.p.alpha), np.int64(y.size))
