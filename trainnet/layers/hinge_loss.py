"""HingeLoss: the one-vs-all hinge loss of N rows of scores against one label per row.

Bottom 0 is seen as N rows of ``dim = count / N`` scores, bottom 1 holds N labels (floats,
truncated to an int, in ``[0, dim)``).  With ``t = +1`` at the label and ``-1`` elsewhere,
``m = max(0, 1 - t x)``; L1: ``loss = sum m / N``, L2: ``loss = sum m^2 / N``.  The gradient is
``-t sign(m)`` (L1) or ``-2 t m`` (L2), times ``loss_weight / N``, as Caffe's.  The margins ``m``
and the one-hot labels are kept from forward, so backward reads no bottom.

The GPU pass (``hinge_loss.cu``) is a two-stage reduction forward (``loss.cuh``: a grid writing
partial sums, one block adding them) that keeps the margins and a code per label, and one
elementwise kernel backward.  A label outside ``[0, dim)``, which the
CPU pass refuses, makes the loss and the gradient NaN there.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.loss import finish_loss_gpu, loss_buffers, loss_weight, row_label_setup
from trainnet.layers.softmax_loss import label_buffers, read_labels
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class HingeLossParams(Strict):
    norm: Literal["L1", "L2"] = "L1"


@register("HingeLoss")
class HingeLoss(Layer):
    Params = HingeLossParams
    caffe_params = {"hinge_loss_param": None}
    num_bottoms = (2, 2)
    is_loss = True
    no_grad_bottoms = (1,)  # the label
    backward_reads_bottom = False  # backward reads the kept margins and labels

    def setup(self, bottom_shapes):
        self.shape3 = row_label_setup(self, bottom_shapes)
        return [()]

    def buffers_gpu(self, ctx):
        n, dim, _ = self.shape3
        return {"margin": Buffer((n, dim)), "label": Buffer((n,), np.int64),
                **loss_buffers(n * dim)}

    def buffers_cpu(self, ctx):
        return {"margin": Buffer(self.shape3), **label_buffers(self.shape3)}

    def flops(self):
        n, dim, _ = self.shape3
        return 5 * n * dim

    def forward_cpu(self, io: StepIO):
        n = self.shape3[0]
        read_labels(self, io, None)
        x, m, onehot = io.bottom[0].reshape(self.shape3), io.buf["margin"], io.buf["onehot"]
        np.multiply(x, onehot, out=m)
        m *= -2
        m += x
        m += 1                                  # 1 - t x
        np.maximum(m, 0, out=m)
        total = m.sum() if self.p.norm == "L1" else np.vdot(m, m)
        io.top[0][...] = total / max(n, 1)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        n = self.shape3[0]
        m, dx3 = io.buf["margin"], dx.reshape(self.shape3)
        if self.p.norm == "L1":
            np.sign(m, out=dx3)
        else:
            np.multiply(m, 2, out=dx3)
        np.negative(dx3, out=dx3, where=io.buf["onehot"])  # times -t
        dx3 *= loss_weight(io) / max(n, 1)

    def forward_gpu(self, io: StepIO):
        n, dim, _ = self.shape3
        partials = io.buf["partials"]
        io.gpu.launch_blocks(KERNELS, "hinge_loss_forward", partials.size, BLOCK, partials,
                             io.buf["margin"], io.buf["label"], io.bottom[0], io.bottom[1],
                             np.int64(n), np.int64(dim), np.int32(self.p.norm == "L2"))
        finish_loss_gpu(io, fixed_norm=max(n, 1))

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        n, dim, _ = self.shape3
        io.gpu.launch(KERNELS, "hinge_loss_backward", dx.size, dx, io.buf["margin"],
                      io.buf["label"], io.top_diff[0], np.int64(n), np.int64(dim),
                      np.int32(self.p.norm == "L2"))
