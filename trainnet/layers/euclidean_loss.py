"""EuclideanLoss: ``loss = sum (a - b)^2 / (2N)``, N the first dimension of bottom 0.

The bottoms hold the same count and the same first dimension (Caffe's checks).  Both take a
gradient, ``+-(a - b) * loss_weight / N``, each only where it needs one; ``a - b`` is kept from
forward in the ``diff`` buffer (Caffe's ``diff_``), so backward reads no bottom.

The GPU pass (``euclidean_loss.cu``) is a two-stage reduction forward (``loss.cuh``: a grid
keeping the difference and writing partial sums of squares, one block adding them in a fixed
order) and one kernel backward writing both gradients.
"""

from __future__ import annotations

import math

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.loss import finish_loss_gpu, loss_buffers, loss_weight
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


@register("EuclideanLoss")
class EuclideanLoss(Layer):
    num_bottoms = (2, 2)
    is_loss = True
    backward_reads_bottom = False  # backward reads the kept difference

    def setup(self, bottom_shapes):
        a, b = bottom_shapes
        if not a or not b or a[0] != b[0]:
            raise self.error(f"bottoms 0 {a} and 1 {b} must have the same first dimension")
        if math.prod(a) != math.prod(b):
            raise self.error(f"bottoms 0 {a} and 1 {b} must have the same count")
        self.num = a[0]
        return [()]

    def buffers_cpu(self, ctx):
        return {"diff": Buffer(self.bottom_shapes[0])}

    def buffers_gpu(self, ctx):
        return {**self.buffers_cpu(ctx), **loss_buffers(math.prod(self.bottom_shapes[0]))}

    def flops(self):
        return 3 * math.prod(self.bottom_shapes[0])  # subtract, multiply, add

    def forward_cpu(self, io: StepIO):
        diff = io.buf["diff"].reshape(-1)
        np.subtract(io.bottom[0].reshape(-1), io.bottom[1].reshape(-1), out=diff)
        io.top[0][...] = np.dot(diff, diff) / max(self.num, 1) / 2

    def backward_cpu(self, io: StepIO):
        scale = loss_weight(io) / max(self.num, 1)
        for i, sign in ((0, 1.0), (1, -1.0)):
            dx = io.bottom_diff[i]
            if dx is not None:
                np.multiply(io.buf["diff"].reshape(dx.shape), sign * scale, out=dx)

    def forward_gpu(self, io: StepIO):
        partials, diff = io.buf["partials"], io.buf["diff"]
        io.gpu.launch_blocks(KERNELS, "euclidean_loss_forward", partials.size, BLOCK, partials,
                             diff, io.bottom[0], io.bottom[1], np.int64(diff.size))
        finish_loss_gpu(io, fixed_norm=max(self.num, 1), scale=0.5)

    def backward_gpu(self, io: StepIO):
        da, db = io.bottom_diff
        if da is None and db is None:
            return
        diff = io.buf["diff"]
        io.gpu.launch(KERNELS, "euclidean_loss_backward", diff.size, diff if da is None else da,
                      diff if db is None else db, diff, io.top_diff[0], np.int32(da is not None),
                      np.int32(db is not None), np.int64(diff.size),
                      np.float32(1 / max(self.num, 1)))
