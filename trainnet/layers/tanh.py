"""TanH: ``y = tanh(x)``; backward reads only the top (``dy (1 - y^2)``), so it runs in place."""

from __future__ import annotations

from typing import Literal

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class TanHParams(Strict):
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored


@register("TanH")
class TanH(Neuron):
    Params = TanHParams
    caffe_params = {"tanh_param": None}
    backward_reads_bottom = False
    backward_reads_top = True

    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, backward_only=("factor",))

    def forward_cpu(self, io: StepIO):
        np.tanh(io.bottom[0], out=io.top[0])

    def backward_cpu(self, io: StepIO):
        y, f = io.top[0], io.buf["factor"]
        np.multiply(y, y, out=f)
        np.subtract(1, f, out=f)
        np.multiply(io.top_diff[0], f, out=io.bottom_diff[0])

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "tanh_forward", x.size, y, x, np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        y, dx = io.top[0], io.bottom_diff[0]
        io.gpu.launch(KERNELS, "tanh_backward", y.size, dx, io.top_diff[0], y, np.int64(y.size))
