"""Softmax over one axis: ``y = exp(x - max x) / sum exp(x - max x)``.

The blob is seen as ``(outer, C, inner)`` around ``axis``; the per-position max and sum go
to the ``scale`` buffer (Caffe's ``scale_``), so neither pass allocates.

The GPU pass (``softmax.cu``) runs one thread per ``(outer, inner)`` position and needs no buffer.
"""

from __future__ import annotations

from typing import Literal

import math

import numpy as np

from trainnet.layers.base import Buffer, Layer, Shape, StepIO, register
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class SoftmaxParams(Strict):
    axis: int = 1
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored


def split_axis(layer: Layer, shape: Shape, axis: int) -> tuple[int, int, int, int]:
    """Caffe's canonical axis and the ``(outer, C, inner)`` view of ``shape`` around it."""
    a = axis + len(shape) if axis < 0 else axis
    if not 0 <= a < len(shape):
        raise layer.error(f"axis {axis} is out of range for a {len(shape)}-D bottom {shape}")
    return a, math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:])


def softmax_into(x3: np.ndarray, y3: np.ndarray, scale: np.ndarray) -> None:
    """Numerically stable softmax of ``x3`` over axis 1 into ``y3``.

    ``scale`` is an ``(outer, 1, inner)`` workspace for the max and the sum.
    """
    np.max(x3, axis=1, keepdims=True, out=scale)
    np.subtract(x3, scale, out=y3)
    np.exp(y3, out=y3)
    np.sum(y3, axis=1, keepdims=True, out=scale)
    np.divide(y3, scale, out=y3)


@register("Softmax")
class Softmax(Layer):
    Params = SoftmaxParams
    caffe_params = {"softmax_param": None}
    backward_reads_bottom = False
    backward_reads_top = True

    def setup(self, bottom_shapes):
        _, outer, c, inner = split_axis(self, bottom_shapes[0], self.p.axis)
        self.shape3 = (outer, c, inner)
        return [bottom_shapes[0]]

    def buffers_gpu(self, ctx):
        return {}  # softmax.cu needs no buffer

    def buffers_cpu(self, ctx):
        outer, _, inner = self.shape3
        return {"scale": Buffer((outer, 1, inner))}

    def flops(self):
        return 5 * math.prod(self.shape3)  # max, subtract, exp, sum, divide

    def forward_cpu(self, io: StepIO):
        softmax_into(io.bottom[0].reshape(self.shape3), io.top[0].reshape(self.shape3),
                     io.buf["scale"])

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        y = io.top[0].reshape(self.shape3)
        dy = io.top_diff[0].reshape(self.shape3)
        dx3 = dx.reshape(self.shape3)
        dot = io.buf["scale"]
        np.multiply(dy, y, out=dx3)
        np.sum(dx3, axis=1, keepdims=True, out=dot)
        np.subtract(dy, dot, out=dx3)
        np.multiply(dx3, y, out=dx3)

    def forward_gpu(self, io: StepIO):
        outer, c, inner = self.shape3
        rows = np.int64(outer * inner)
        io.gpu.launch(KERNELS, "softmax_forward", rows, io.top[0], io.bottom[0], rows, np.int32(c),
                      np.int64(inner))

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        outer, c, inner = self.shape3
        rows = np.int64(outer * inner)
        io.gpu.launch(KERNELS, "softmax_backward", rows, dx, io.top_diff[0], io.top[0], rows,
                      np.int32(c), np.int64(inner))
