"""MultinomialLogisticLoss: the mean negative log-probability of each row's label.

Bottom 0 holds probabilities, seen as N rows of ``dim = count / N`` (a Softmax before it
makes them); bottom 1 holds N labels (floats, truncated to an int, in ``[0, dim)``).
``loss = -sum log(max(p[label], 1e-20)) / N``; the gradient is
``-loss_weight / (N max(p[label], 1e-20))`` at each label and 0 elsewhere, as Caffe's.

The GPU pass (``multinomial_logistic_loss.cu``) is a two-stage reduction forward (``loss.cuh``:
a grid writing partial sums, one block adding them) and one elementwise kernel backward, both
reading the labels as they come; a label outside
``[0, dim)``, which the CPU pass refuses, makes the loss and the gradient NaN.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.loss import (LOG_THRESHOLD, finish_loss_gpu, loss_buffers, loss_weight,
                                  row_label_setup)
from trainnet.layers.softmax_loss import label_buffers, read_labels
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(Layer):
    num_bottoms = (2, 2)
    is_loss = True
    no_grad_bottoms = (1,)  # the label

    def setup(self, bottom_shapes):
        self.shape3 = row_label_setup(self, bottom_shapes)
        return [()]

    def buffers_gpu(self, ctx):
        return loss_buffers(self.shape3[0])  # the forward's partial sums

    def buffers_cpu(self, ctx):
        return {"picked": Buffer((self.shape3[0], 1, 1)), **label_buffers(self.shape3)}

    def flops(self):
        n, dim, _ = self.shape3
        return n * dim + 2 * n

    def forward_cpu(self, io: StepIO):
        n = self.shape3[0]
        read_labels(self, io, None)
        picked = io.buf["picked"]
        np.sum(io.bottom[0].reshape(self.shape3), axis=1, keepdims=True, where=io.buf["onehot"],
               out=picked)
        np.maximum(picked, LOG_THRESHOLD, out=picked)
        np.log(picked, out=picked)
        io.top[0][...] = -picked.sum() / max(n, 1)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        n = self.shape3[0]
        dx3 = dx.reshape(self.shape3)
        np.maximum(io.bottom[0].reshape(self.shape3), LOG_THRESHOLD, out=dx3)
        np.divide(-loss_weight(io) / max(n, 1), dx3, out=dx3)
        np.multiply(dx3, io.buf["onehot"], out=dx3)

    def forward_gpu(self, io: StepIO):
        n, dim, _ = self.shape3
        partials = io.buf["partials"]
        io.gpu.launch_blocks(KERNELS, "multinomial_logistic_loss_forward", partials.size, BLOCK,
                             partials, io.bottom[0], io.bottom[1], np.int64(n), np.int64(dim))
        finish_loss_gpu(io, fixed_norm=max(n, 1))

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        n, dim, _ = self.shape3
        io.gpu.launch(KERNELS, "multinomial_logistic_loss_backward", dx.size, dx, io.bottom[0],
                      io.bottom[1], io.top_diff[0], np.int64(n), np.int64(dim))
