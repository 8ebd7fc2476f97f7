"""MVN: Caffe's mean-variance normalization of each (n, c) over its H*W cells, or of each n
over all of its C*H*W (``across_channels``).

Forward subtracts the row's mean and, with ``normalize_variance``, divides by
``sqrt(var) + eps`` (eps after the root, as Caffe), var being the mean of ``(x - mean)^2``
(Caffe's two-pass form).  Backward is Caffe's formula, which treats that divisor s as a constant
where the exact gradient has sqrt(var) (the two agree for Caffe's tiny eps):
``dx = (dy - (y * sum(y dy) + sum(dy)) / D) / s``, or without the variance ``dy - mean(dy)``.
The divisor is kept from forward to backward.

The GPU pass (``mvn.cu``) runs one block per row, summing with ``block_sum``: no atomics.
"""

from __future__ import annotations

import math

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class MVNParams(Strict):
    normalize_variance: bool = True
    across_channels: bool = False
    eps: float = 1e-9


@register("MVN")
class MVN(Layer):
    Params = MVNParams
    caffe_params = {"mvn_param": None}
    backward_reads_bottom = False

    @property
    def backward_reads_top(self) -> bool:
        return self.p.normalize_variance  # y * sum(y dy)

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) < 2 and not self.p.across_channels:
            raise self.error(f"expects an (N, C, ...) bottom, got {len(shape)}-D {shape}; "
                             "set across_channels to normalize each item of a 1-D bottom")
        self.rows = shape[0] if self.p.across_channels else shape[0] * shape[1]
        self.dim = math.prod(shape) // self.rows if self.rows else 0
        return [shape]

    def buffers_gpu(self, ctx):
        if self.p.normalize_variance:
            return {"divisor": Buffer((self.rows, 1))}  # sqrt(var) + eps of each row
        return {}

    def buffers_cpu(self, ctx):
        return {**self.buffers_gpu(ctx), "mean": Buffer((self.rows, 1))}  # also backward's row sums

    def flops(self):
        return math.prod(self.top_shapes[0]) * (5 if self.p.normalize_variance else 2)

    def _rows(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.rows, self.dim)

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        x, y, mean = self._rows(io.bottom[0]), self._rows(io.top[0]), io.buf["mean"]
        inv_dim = 1.0 / self.dim
        np.sum(x, axis=1, keepdims=True, out=mean)
        np.multiply(mean, inv_dim, out=mean)
        np.subtract(x, mean, out=y)
        if not self.p.normalize_variance:
            return
        divisor = io.buf["divisor"]
        np.einsum("ij,ij->i", y, y, out=divisor[:, 0])
        np.multiply(divisor, inv_dim, out=divisor)
        np.sqrt(divisor, out=divisor)
        np.add(divisor, self.p.eps, out=divisor)
        np.divide(y, divisor, out=y)

    def backward_cpu(self, io: StepIO):
        if io.bottom_diff[0] is None:
            return
        dx, dy, sums = self._rows(io.bottom_diff[0]), self._rows(io.top_diff[0]), io.buf["mean"]
        if not self.p.normalize_variance:
            np.sum(dy, axis=1, keepdims=True, out=sums)
            np.multiply(sums, 1.0 / self.dim, out=sums)
            np.subtract(dy, sums, out=dx)
            return
        y = self._rows(io.top[0])
        np.einsum("ij,ij->i", y, dy, out=sums[:, 0])
        np.multiply(y, sums, out=dx)
        np.sum(dy, axis=1, keepdims=True, out=sums)
        np.add(dx, sums, out=dx)
        np.multiply(dx, -1.0 / self.dim, out=dx)
        np.add(dx, dy, out=dx)
        np.divide(dx, io.buf["divisor"], out=dx)

    # --- GPU -------------------------------------------------------------------------------
    def _divisor(self, io: StepIO):
        """The kept divisor, or (never read) the top when there is none."""
        return io.buf["divisor"] if self.p.normalize_variance else io.top[0]

    def forward_gpu(self, io: StepIO):
        io.gpu.launch_blocks(KERNELS, "mvn_forward", self.rows, BLOCK, io.top[0], self._divisor(io),
                             io.bottom[0], np.int64(self.dim), np.float32(1.0 / self.dim),
                             np.int32(self.p.normalize_variance), np.float32(self.p.eps))

    def backward_gpu(self, io: StepIO):
        if io.bottom_diff[0] is None:
            return
        io.gpu.launch_blocks(KERNELS, "mvn_backward", self.rows, BLOCK, io.bottom_diff[0],
                             io.top_diff[0], io.top[0], self._divisor(io), np.int64(self.dim),
                             np.float32(1.0 / self.dim), np.int32(self.p.normalize_variance))
