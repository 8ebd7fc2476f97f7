"""Sigmoid: ``y = 1 / (1 + exp(-x))``, computed as Caffe does, ``0.5 tanh(x / 2) + 0.5``.

Backward reads only the top (``dy y (1 - y)``), so the layer runs in place.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)
HALF = np.float32(0.5)


class SigmoidParams(Strict):
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored


def sigmoid_into(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``out = 0.5 tanh(0.5 x) + 0.5`` in place over ``out`` (which may be ``x``)."""
    np.multiply(x, HALF, out=out)
    np.tanh(out, out=out)
    out *= HALF
    out += HALF
    return out


@register("Sigmoid")
class Sigmoid(Neuron):
    Params = SigmoidParams
    caffe_params = {"sigmoid_param": None}
    backward_reads_bottom = False
    backward_reads_top = True

    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, backward_only=("factor",))

    def forward_cpu(self, io: StepIO):
        sigmoid_into(io.top[0], io.bottom[0])

    def backward_cpu(self, io: StepIO):
        y, f = io.top[0], io.buf["factor"]
        np.subtract(1, y, out=f)
        f *= y
        np.multiply(io.top_diff[0], f, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "sigmoid_forward", x.size, y, x, np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        y, dx = io.top[0], io.bottom_diff[0]
        io.gpu.launch(KERNELS, "sigmoid_backward", y.size, dx, io.top_diff[0], y, np.int64(y.size))
