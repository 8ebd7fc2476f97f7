"""Reduction: reduce every axis from ``axis`` on to one number (Caffe's reduction_param).

``SUM`` adds, ``ASUM`` adds absolute values, ``SUMSQ`` adds squares, ``MEAN`` averages; the
result is times ``coeff``.  The top keeps the bottom's dims before ``axis``: with ``axis: 0``
(the default) it is a scalar, shape ``()``, so a Reduction can serve as a loss.

Backward follows Caffe: ``dx = coeff * dy`` (``coeff / count`` for MEAN), times ``sign(x)`` for
ASUM (0 at 0) or ``2 x`` for SUMSQ, with the same float32 operations on both devices.  The GPU's
forward sums one row per block (``block_sum``), so its sums may differ from NumPy's in the last
bits.  A single row (``axis: 0``, a scalar top) would be one block for the whole blob, so it is
summed in two stages: a grid writing ``partials`` (``partial_blocks``), then one block adding
them in a fixed order.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.softmax import split_axis
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import BLOCK, kernel_source, partial_blocks

KERNELS = kernel_source(__file__)
OPS = ("SUM", "ASUM", "SUMSQ", "MEAN")


class ReductionParams(Strict):
    operation: Literal["SUM", "ASUM", "SUMSQ", "MEAN"] = "SUM"
    axis: int = 0
    coeff: float = 1.0


@register("Reduction")
class Reduction(Layer):
    Params = ReductionParams
    caffe_params = {"reduction_param": None}

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        a = split_axis(self, shape, self.p.axis)[0]
        self.rows, self.dim = math.prod(shape[:a]), math.prod(shape[a:])
        coeff = np.float32(self.p.coeff)
        self.coeff = coeff / np.float32(self.dim) if self.p.operation == "MEAN" else coeff
        self.op = OPS.index(self.p.operation)
        # SUM and MEAN spread the top gradient evenly: their backward does not read the bottom
        self.backward_reads_bottom = self.p.operation in ("ASUM", "SUMSQ")
        return [shape[:a]]

    def buffers_gpu(self, ctx):  # a single row's partial sums
        return {"partials": Buffer((partial_blocks(self.dim),))} if self.rows == 1 else {}

    def buffers_cpu(self, ctx):
        bufs = {"scale": Buffer((self.rows,))}  # coeff * dy per row (backward)
        if self.p.operation in ("ASUM", "SUMSQ"):
            bufs["terms"] = Buffer((self.rows, self.dim))  # |x| or x^2 (forward)
        return bufs

    def flops(self):
        return 2 * self.rows * self.dim

    def forward_cpu(self, io: StepIO):
        x, y = io.bottom[0].reshape(self.rows, self.dim), io.top[0].reshape(self.rows)
        op = self.p.operation
        if op in ("ASUM", "SUMSQ"):
            terms = io.buf["terms"]
            (np.abs if op == "ASUM" else np.square)(x, out=terms)
            x = terms
        np.sum(x, axis=1, out=y)
        if self.coeff != 1:
            y *= self.coeff

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        dx2, op = dx.reshape(self.rows, self.dim), self.p.operation
        scale = np.multiply(io.top_diff[0].reshape(self.rows), self.coeff, out=io.buf["scale"])
        if op in ("SUM", "MEAN"):
            np.copyto(dx2, scale[:, None])
        elif op == "ASUM":
            np.sign(io.bottom[0].reshape(self.rows, self.dim), out=dx2)
            dx2 *= scale[:, None]
        else:
            scale *= np.float32(2)
            np.multiply(io.bottom[0].reshape(self.rows, self.dim), scale[:, None], out=dx2)

    def forward_gpu(self, io: StepIO):
        op, dim = np.int32(self.op), np.int64(self.dim)
        if self.rows > 1:
            io.gpu.launch_blocks(KERNELS, "reduction_forward", self.rows, BLOCK, io.top[0],
                                 io.bottom[0], op, self.coeff, dim)
            return
        partials = io.buf["partials"]
        io.gpu.launch_blocks(KERNELS, "reduction_partials", partials.size, BLOCK, partials,
                             io.bottom[0], op, dim)
        io.gpu.launch_blocks(KERNELS, "reduction_finish", 1, BLOCK, io.top[0], partials,
                             self.coeff, np.int64(partials.size))

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is not None:
            io.gpu.launch(KERNELS, "reduction_backward", dx.size, dx, io.top_diff[0], io.bottom[0],
                          np.int32(self.op), self.coeff, np.int64(self.dim), np.int64(dx.size))
