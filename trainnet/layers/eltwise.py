"""Eltwise: Caffe's element-wise SUM (with one coefficient per bottom), PROD or MAX of >= 2
bottoms of one shape.

MAX keeps, from forward to backward, which bottom won each element, with Caffe's ties: bottom 1
over bottom 0 (``a > b ? a : b``), then the earliest of the rest (a strict ``>`` scan); the
winner alone takes the gradient.  PROD's gradient is the product of the other bottoms
(``stable_prod_grad``) or ``top / bottom``; the top is recomputed from the bottoms in the same
order (bit for bit the forward's), so backward never reads the top and a following in-place ReLU
may overwrite it.  That ReLU folds in (``can_fuse_relu``): forward applies ``max(y, 0)``, backward
first masks the top gradient by ``top > 0``.

On the GPU one ``eltwise_combine`` launch combines up to four bottoms per element (more continue
from the top, as split.cu does); backward reuses it to scale SUM's gradients and to form PROD's
products, so the GPU adds and multiplies in the CPU pass's order.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.netcfg.common import FloatList, Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)
PER_LAUNCH = 4  # inputs combined by one eltwise_combine launch
OPS = {"PROD": 0, "SUM": 1, "MAX": 2}  # as eltwise.cu reads them


class EltwiseParams(Strict):
    operation: Literal["PROD", "SUM", "MAX"] = "SUM"
    coeff: FloatList = []  # SUM only: one per bottom (default all 1)
    stable_prod_grad: bool = True


@register("Eltwise")
class Eltwise(Layer):
    Params = EltwiseParams
    caffe_params = {"eltwise_param": None}
    num_bottoms = (2, None)
    can_fuse_relu = True

    @property
    def backward_reads_bottom(self) -> bool:
        return self.p.operation == "PROD"  # SUM needs its coefficients, MAX its kept winners

    def setup(self, bottom_shapes):
        p = self.p
        if p.coeff and p.operation != "SUM":
            raise self.error(f"coeff is only for operation SUM, not {p.operation}")
        if p.coeff and len(p.coeff) != len(bottom_shapes):
            raise self.error(f"coeff has {len(p.coeff)} values for {len(bottom_shapes)} bottoms; "
                             "give one per bottom")
        for i, s in enumerate(bottom_shapes[1:], 1):
            if s != bottom_shapes[0]:
                raise self.error(f"bottom {i} has shape {s}, bottom 0 has {bottom_shapes[0]}; "
                                 "Eltwise needs bottoms of one shape")
        self.coeffs = list(p.coeff) or [1.0] * len(bottom_shapes)
        return [bottom_shapes[0]]

    def _keeps_winner(self, ctx) -> bool:
        return self.p.operation == "MAX" and not ctx.forward_only

    def buffers_gpu(self, ctx):
        if self._keeps_winner(ctx):
            return {"winner": Buffer(self.top_shapes[0], np.int32)}  # the bottom each came from
        return {}

    def buffers_cpu(self, ctx):
        shape, bufs = self.top_shapes[0], {}
        if self._keeps_winner(ctx):
            bufs["winner"] = Buffer(shape, np.int32)  # the bottom each came from
            bufs["flag"] = Buffer(shape, np.bool_)
        if self.p.operation == "SUM" and any(c != 1 for c in self.coeffs):
            bufs["scaled"] = Buffer(shape)
        if ctx.fused_relu and not ctx.forward_only:
            bufs["positive"] = Buffer(shape, np.bool_)
        return bufs

    def flops(self):
        n = len(self.bottom_shapes)
        return math.prod(self.top_shapes[0]) * (2 * n if self.p.operation == "SUM" else n - 1)

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        xs, top, op = io.bottom, io.top[0], self.p.operation
        if op == "SUM":
            self._scale(xs[0], self.coeffs[0], top)
            for x, c in zip(xs[1:], self.coeffs[1:]):
                np.add(top, x if c == 1 else np.multiply(x, c, out=io.buf["scaled"]), out=top)
        elif op == "PROD":
            self._product(xs, top)
        elif io.ctx.forward_only:
            np.maximum(xs[0], xs[1], out=top)
            for x in xs[2:]:
                np.maximum(top, x, out=top)
        else:
            winner, flag = io.buf["winner"], io.buf["flag"]
            np.greater(xs[0], xs[1], out=flag)  # Caffe: a > b ? a : b
            np.copyto(top, xs[1])
            np.copyto(top, xs[0], where=flag)
            np.logical_not(flag, out=winner)
            for i, x in enumerate(xs[2:], 2):
                np.greater(x, top, out=flag)
                np.copyto(top, x, where=flag)
                np.copyto(winner, i, where=flag)
        if io.ctx.fused_relu:
            np.maximum(top, 0, out=top)

    @staticmethod
    def _scale(x: np.ndarray, c: float, out: np.ndarray) -> None:
        if c == 1:
            np.copyto(out, x)
        else:
            np.multiply(x, c, out=out)

    @staticmethod
    def _product(factors: list, out: np.ndarray) -> None:
        """out = ((f0 * f1) * f2) ..., Caffe's order."""
        if len(factors) == 1:
            np.copyto(out, factors[0])
            return
        np.multiply(factors[0], factors[1], out=out)
        for f in factors[2:]:
            np.multiply(out, f, out=out)

    def backward_cpu(self, io: StepIO):
        dy, xs, op = io.top_diff[0], io.bottom, self.p.operation
        if io.ctx.fused_relu:
            dy *= np.greater(io.top[0], 0, out=io.buf["positive"])
        for i, dx in enumerate(io.bottom_diff):
            if dx is None:
                continue
            if op == "SUM":
                self._scale(dy, self.coeffs[i], dx)
            elif op == "MAX":
                np.equal(io.buf["winner"], i, out=io.buf["flag"])
                np.multiply(dy, io.buf["flag"], out=dx)
            elif self.p.stable_prod_grad:
                self._product(xs[:i] + xs[i + 1:] + [dy], dx)
            else:
                self._product(xs, dx)  # the top, as forward made it
                np.divide(dx, xs[i], out=dx)
                np.multiply(dx, dy, out=dx)

    # --- GPU -------------------------------------------------------------------------------
    def _combine_gpu(self, gpu, out, inputs, op: str, coeffs=None, winner=None, relu=False):
        """out = op over ``inputs`` in order, up to PER_LAUNCH per launch, later launches
        continuing from ``out``; ``relu`` applies max(., 0) at the end; ``winner`` keeps the
        MAX's winners.  Without one the kernel's int* is out's memory seen as int32, which it
        never writes (no allocation, and the prototype's type)."""
        keep = winner is not None
        winner = winner if keep else out.view(np.int32)
        coeffs = coeffs or [1.0] * len(inputs)
        for start in range(0, len(inputs), PER_LAUNCH):
            group = inputs[start:start + PER_LAUNCH]
            pad = PER_LAUNCH - len(group)
            c = coeffs[start:start + PER_LAUNCH] + [0.0] * pad
            last = start + PER_LAUNCH >= len(inputs)
            gpu.launch(KERNELS, "eltwise_combine", out.size, out, winner,
                       *(group + [group[0]] * pad), *(np.float32(v) for v in c),
                       np.int32(len(group)), np.int32(OPS[op]), np.int32(start),
                       np.int32(keep), np.int32(relu and last), np.int64(out.size))

    def forward_gpu(self, io: StepIO):
        self._combine_gpu(io.gpu, io.top[0], list(io.bottom), self.p.operation, self.coeffs,
                          io.buf.get("winner"), io.ctx.fused_relu)

    def backward_gpu(self, io: StepIO):
        gpu, dy, xs, n = io.gpu, io.top_diff[0], list(io.bottom), np.int64(io.top_diff[0].size)
        if io.ctx.fused_relu:
            gpu.launch(KERNELS, "eltwise_relu_backward", n, dy, io.top[0], n)
        for i, dx in enumerate(io.bottom_diff):
            if dx is None:
                continue
            if self.p.operation == "SUM":
                self._combine_gpu(gpu, dx, [dy], "SUM", [self.coeffs[i]])
            elif self.p.operation == "MAX":
                gpu.launch(KERNELS, "eltwise_max_backward", n, dx, dy, io.buf["winner"],
                           np.int32(i), n)
            elif self.p.stable_prod_grad:
                self._combine_gpu(gpu, dx, xs[:i] + xs[i + 1:] + [dy], "PROD")
            else:
                self._combine_gpu(gpu, dx, xs, "PROD")
                gpu.launch(KERNELS, "eltwise_prod_backward_unstable", n, dx, xs[i], dy, n)
