"""ReLU: ``y = max(x, 0) + negative_slope * min(x, 0)``; may run in place."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ReLUParams(Strict):
    # Caffe admits any slope; a negative one would make y > 0 where x < 0, and backward reads
    # only the top (so that the layer can run in place).
    negative_slope: float = Field(0.0, ge=0)
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored


@register("ReLU")
class ReLU(Layer):
    Params = ReLUParams
    caffe_params = {"relu_param": None}
    in_place_ok = True
    # Backward reads the top: y > 0 exactly where x > 0, so it works in place too.
    backward_reads_bottom = False
    backward_reads_top = True

    def setup(self, bottom_shapes):
        return [bottom_shapes[0]]

    @property
    def fuses_as_relu(self) -> bool:
        return self.p.negative_slope == 0

    def buffers_gpu(self, ctx):
        return {}  # relu.cu needs no buffer

    def buffers_cpu(self, ctx):
        shape = self.top_shapes[0]
        bufs = {"positive": Buffer(shape, np.bool_)}
        if self.p.negative_slope:
            bufs["scaled"] = Buffer(shape)
        return bufs

    def flops(self):
        return math.prod(self.top_shapes[0])

    def forward_cpu(self, io: StepIO):
        x, y, slope = io.bottom[0], io.top[0], self.p.negative_slope
        if slope == 0:
            np.maximum(x, 0, out=y)
            return
        scaled = np.multiply(x, np.float32(slope), out=io.buf["scaled"])
        # slope <= 1: max(x, slope x); slope > 1: min(x, slope x)
        (np.maximum if slope <= 1 else np.minimum)(x, scaled, out=y)

    def backward_cpu(self, io: StepIO):
        y, dy, dx, slope = io.top[0], io.top_diff[0], io.bottom_diff[0], self.p.negative_slope
        positive = np.greater(y, 0, out=io.buf["positive"])
        if slope == 0:
            np.multiply(dy, positive, out=dx)
            return
        # dx = dy * (slope + (1 - slope) [y > 0])
        factor = np.multiply(positive, np.float32(1 - slope), out=io.buf["scaled"])
        factor += np.float32(slope)
        np.multiply(dy, factor, out=dx)

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "relu_forward", x.size, y, x, np.float32(self.p.negative_slope),
                      np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        y, dy, dx = io.top[0], io.top_diff[0], io.bottom_diff[0]
        io.gpu.launch(KERNELS, "relu_backward", y.size, dx, dy, y,
                      np.float32(self.p.negative_slope), np.int64(y.size))
