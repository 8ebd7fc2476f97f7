"""SigmoidCrossEntropyLoss: the cross-entropy of targets ``t`` in [0, 1] and ``sigmoid(x)``.

``loss = -sum [x (t - [x >= 0]) - log(1 + exp(-|x|))] / norm``, Caffe's overflow-free form,
over the positions whose target, truncated to an int, is not ``ignore_label``.  The
normalization defaults to BATCH_SIZE here (Caffe keeps this layer's historical
``/ N``), VALID or BATCH_SIZE by the legacy ``normalize``.  The gradient reaches the scores only:
``(sigmoid(x) - t) * loss_weight / norm``, 0 at ignored positions; ``sigmoid(x)`` is Caffe's
``0.5 tanh(x / 2) + 0.5``.

The GPU pass (``sigmoid_cross_entropy_loss.cu``) is a two-stage reduction forward (``loss.cuh``:
a grid writing partial losses and counts, one block adding them), which keeps the normalizer on
the device, and one elementwise kernel backward.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.loss import (LossParams, finish_loss_gpu, loss_buffers, loss_weight,
                                  normalizer)
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class SigmoidCrossEntropyLossParams(LossParams):
    default_normalization: ClassVar[str] = "BATCH_SIZE"


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(Layer):
    Params = SigmoidCrossEntropyLossParams
    caffe_params = {"loss_param": None}
    num_bottoms = (2, 2)
    is_loss = True
    no_grad_bottoms = (1,)  # the targets

    def setup(self, bottom_shapes):
        x, t = bottom_shapes
        if not x or not t or x[0] != t[0]:
            raise self.error(f"bottoms 0 {x} and 1 (targets) {t} must have the same first "
                             "dimension")
        if math.prod(x) != math.prod(t):
            raise self.error(f"bottoms 0 {x} and 1 (targets) {t} must have the same count")
        self.outer, self.inner = x[0], math.prod(x[1:])
        return [()]

    def buffers_gpu(self, ctx):
        return loss_buffers(self.outer * self.inner)

    def buffers_cpu(self, ctx):
        n = self.outer * self.inner
        return {"term": Buffer((n,)), "tmp": Buffer((n,)), "code": Buffer((n,), np.int64),
                "valid": Buffer((n,), np.bool_)}

    def flops(self):
        return 8 * self.outer * self.inner

    def _valid(self, io: StepIO) -> int:
        """Mark in ``valid`` the counted positions; return their count."""
        valid = io.buf["valid"]
        if self.p.ignore_label is None:
            valid[...] = True
            return valid.size
        np.copyto(io.buf["code"], io.bottom[1].reshape(-1), casting="unsafe")  # truncates, as Caffe
        np.not_equal(io.buf["code"], self.p.ignore_label, out=valid)
        return int(np.count_nonzero(valid))

    def forward_cpu(self, io: StepIO):
        x, t = io.bottom[0].reshape(-1), io.bottom[1].reshape(-1)
        term, tmp = io.buf["term"], io.buf["tmp"]
        np.greater_equal(x, 0, out=tmp)
        np.subtract(t, tmp, out=term)
        np.multiply(term, x, out=term)          # x (t - [x >= 0])
        np.abs(x, out=tmp)
        np.negative(tmp, out=tmp)
        np.exp(tmp, out=tmp)
        np.log1p(tmp, out=tmp)                  # log(1 + exp(-|x|))
        np.subtract(term, tmp, out=term)
        count = self._valid(io)
        np.multiply(term, io.buf["valid"], out=term)
        io.top[0][...] = -term.sum() / normalizer(self.p.mode, self.outer, self.inner, count)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        dx1, valid = dx.reshape(-1), io.buf["valid"]  # ``valid`` is kept from forward
        np.multiply(io.bottom[0].reshape(-1), 0.5, out=dx1)
        np.tanh(dx1, out=dx1)
        np.multiply(dx1, 0.5, out=dx1)
        dx1 += 0.5                              # sigmoid(x)
        np.subtract(dx1, io.bottom[1].reshape(-1), out=dx1)
        np.multiply(dx1, valid, out=dx1)
        count = int(np.count_nonzero(valid))
        dx1 *= loss_weight(io) / normalizer(self.p.mode, self.outer, self.inner, count)

    def forward_gpu(self, io: StepIO):
        mode, ignore = self.p.mode, self.p.ignore_label
        fixed = 0.0 if mode == "VALID" else normalizer(mode, self.outer, self.inner, 0)
        partials = io.buf["partials"]
        io.gpu.launch_blocks(KERNELS, "sigmoid_cross_entropy_loss_forward", partials.size, BLOCK,
                             partials, io.buf["counts"], io.bottom[0], io.bottom[1],
                             np.int64(self.outer * self.inner), np.int32(ignore is not None),
                             np.int64(ignore or 0))
        finish_loss_gpu(io, fixed_norm=fixed)

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        ignore = self.p.ignore_label
        io.gpu.launch(KERNELS, "sigmoid_cross_entropy_loss_backward", dx.size, dx, io.bottom[0],
                      io.bottom[1], io.buf["norm"], io.top_diff[0], np.int64(dx.size),
                      np.int32(ignore is not None), np.int64(ignore or 0))
