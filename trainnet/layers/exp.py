"""Exp: ``y = base^(shift + scale x)``, ``base`` -1 meaning e.

As in Caffe this is ``outer exp(inner x)`` with ``inner = scale ln(base)`` and
``outer = base^shift``; backward reads only the top (``dx = dy y inner``), so it runs in place.
"""

from __future__ import annotations

import math

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ExpParams(Strict):
    base: float = -1.0
    scale: float = 1.0
    shift: float = 0.0


def log_base(layer: Neuron, base: float) -> float:
    """ln(base) for Exp and Log: base -1 means e; any other must be positive and finite."""
    if base == -1:
        return 1.0
    if not (base > 0 and math.isfinite(base)) or base == 1 and layer.type == "Log":
        rule = "positive, not 1," if layer.type == "Log" else "positive"
        raise layer.error(f"base must be {rule} and finite, or -1 for e; got {base}")
    return math.log(base)


@register("Exp")
class Exp(Neuron):
    Params = ExpParams
    caffe_params = {"exp_param": None}
    backward_reads_bottom = False
    backward_reads_top = True

    def setup(self, bottom_shapes):
        p = self.p
        self.inner = np.float32(log_base(self, p.base) * p.scale)
        self.outer = np.float32(1 if p.shift == 0 else math.exp(p.shift * log_base(self, p.base)))
        return [bottom_shapes[0]]

    def forward_cpu(self, io: StepIO):
        y = np.multiply(io.bottom[0], self.inner, out=io.top[0])
        np.exp(y, out=y)
        if self.outer != 1:
            y *= self.outer

    def backward_cpu(self, io: StepIO):
        dx = np.multiply(io.top_diff[0], io.top[0], out=io.bottom_diff[0])
        if self.inner != 1:
            dx *= self.inner

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "exp_forward", x.size, y, x, self.inner, self.outer,
                      np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        y, dx = io.top[0], io.bottom_diff[0]
        io.gpu.launch(KERNELS, "exp_backward", y.size, dx, io.top_diff[0], y, self.inner,
                      np.int64(y.size))
