"""SoftmaxWithLoss: softmax over ``axis`` then the mean negative log-likelihood of the labels.

``loss = -sum log(max(p[label], FLT_MIN)) / norm``; ``norm`` follows ``normalization`` (VALID:
the counted labels, FULL: every position, BATCH_SIZE: outer count, NONE: 1), never below 1,
as in Caffe.  Labels are floats in their blob, cast to int; ``ignore_label`` positions count
for nothing.  The gradient reaches the scores only, scaled by the loss weight, which the plan
puts in top 0's diff.  Like Caffe, the diff of the optional probabilities top is ignored.

The GPU pass (``softmax_loss.cu``) is one elementwise kernel backward and a two-stage reduction
forward (``loss.cuh``): a grid over the positions, each block writing its partial loss and
count, then one block adding them.  It keeps the probabilities, a code per label (in
``label``) and the normalizer (in ``norm``) for backward, which reads the loss weight on the
device.  A counted label outside
``[0, C)`` cannot stop a GPU pass: it makes the loss and the gradient NaN instead.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from trainnet.errors import TrainnetError
from trainnet.layers.base import Buffer, Layer, Shape, StepIO, count_tops, register
from trainnet.layers.loss import LossParams, finish_loss_gpu, loss_buffers, normalizer
from trainnet.layers.softmax import softmax_into, split_axis
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)

FLT_MIN = float(np.finfo(np.float32).tiny)


class SoftmaxWithLossParams(LossParams):  # loss_param's fields, normalization VALID by default
    axis: int = 1


def label_setup(layer: Layer, shapes: list[Shape], axis: int) -> tuple[int, int, int]:
    """Check that the label blob holds one value per score position; return (outer, C, inner)."""
    scores, label = shapes[0], shapes[1]
    a, outer, c, inner = split_axis(layer, scores, axis)
    if math.prod(label) != outer * inner:
        want = scores[:a] + scores[a + 1:]
        raise layer.error(f"bottom 1 (label) expects shape {want} (one label per position of "
                          f"bottom 0 {scores} outside axis {a}) got {label}")
    layer.classes = np.arange(c).reshape(1, c, 1)
    return outer, c, inner


def label_buffers(shape3: tuple[int, int, int]) -> dict[str, Buffer]:
    outer, c, inner = shape3
    return {"label": Buffer((outer, 1, inner), np.int64),
            "valid": Buffer((outer, 1, inner), np.bool_),
            "onehot": Buffer((outer, c, inner), np.bool_)}


def read_labels(layer: Layer, io: StepIO, ignore_label: Optional[int]) -> int:
    """Fill the ``label``, ``valid`` and ``onehot`` buffers from bottom 1; return the valid count.

    ``onehot`` is the one-hot mask of the counted positions (all False where ignored).
    """
    label, valid, onehot = io.buf["label"], io.buf["valid"], io.buf["onehot"]
    np.copyto(label, io.bottom[1].reshape(label.shape), casting="unsafe")  # truncates, as Caffe
    if ignore_label is None:
        valid[...] = True
    else:
        np.not_equal(label, ignore_label, out=valid)
    np.equal(label, layer.classes, out=onehot)
    np.logical_and(onehot, valid, out=onehot)
    count = int(np.count_nonzero(valid))
    if int(np.count_nonzero(onehot)) != count:  # a counted label outside [0, C)
        c = onehot.shape[1]
        bad = np.flatnonzero(valid & ((label < 0) | (label >= c)))[0]
        raise TrainnetError(f"layer '{layer.name}' ({layer.type}): label value "
                            f"{io.bottom[1].reshape(-1)[bad]:g} at position {bad} is outside "
                            f"[0, {c}) and is not the ignore_label")
    return count


class SoftmaxLabelLoss(Layer):
    """The forward SoftmaxWithLoss and InfogainLoss share: a softmax over ``axis`` of the scores
    (bottom 0) into ``prob``, kept for backward and copied to the optional second top, the labels
    of bottom 1 read, and the summed loss divided by the normalizer.  ``setup`` sets ``shape3``."""

    num_tops = (1, 2)
    is_loss = True
    backward_reads_bottom = False  # backward reads the kept probabilities and labels

    def normalizer(self, valid_count: int) -> float:
        outer, _, inner = self.shape3
        return normalizer(self.p.mode, outer, inner, valid_count)

    def softmax_and_labels(self, io: StepIO) -> int:
        """CPU: the softmax into ``prob`` and the label buffers filled; the counted labels."""
        softmax_into(io.bottom[0].reshape(self.shape3), io.buf["prob"], io.buf["scale"])
        return read_labels(self, io, self.p.ignore_label)

    def write_loss(self, io: StepIO, total: float, count: int) -> None:
        """CPU: top 0 = -total / norm, and the probabilities into top 1 when there is one."""
        io.top[0][...] = -total / self.normalizer(count)
        if len(io.top) > 1:
            np.copyto(io.top[1], io.buf["prob"].reshape(io.top[1].shape))

    def gpu_buffers(self) -> dict[str, Buffer]:
        """GPU: the probabilities, label codes, normalizer and the forward's partial sums."""
        outer, _, inner = self.shape3
        return {"prob": Buffer(self.shape3), "label": label_buffers(self.shape3)["label"],
                **loss_buffers(outer * inner)}

    def forward_sizes(self) -> tuple:
        """GPU: the first stage's last arguments (rows, classes, inner, whether a label is
        ignored and which)."""
        outer, c, inner = self.shape3
        ignore = self.p.ignore_label
        return (np.int64(outer * inner), np.int32(c), np.int64(inner),
                np.int32(ignore is not None), np.int64(ignore or 0))

    def finish_gpu(self, io: StepIO) -> None:
        """GPU: the second stage (the loss, normalized) and the probabilities into top 1."""
        finish_loss_gpu(io, fixed_norm=0.0 if self.p.mode == "VALID" else self.normalizer(0))
        if len(io.top) > 1:
            io.gpu.copy(io.top[1], io.buf["prob"])


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(SoftmaxLabelLoss):
    Params = SoftmaxWithLossParams
    caffe_params = {"softmax_param": ("axis",), "loss_param": None}
    num_bottoms = (2, 2)
    no_grad_bottoms = (1,)  # the label

    def setup(self, bottom_shapes):
        self.shape3 = label_setup(self, bottom_shapes, self.p.axis)
        return [(), bottom_shapes[0]][:count_tops(self)]

    def buffers_gpu(self, ctx):
        return self.gpu_buffers()

    def buffers_cpu(self, ctx):
        outer, _, inner = self.shape3
        return {"prob": Buffer(self.shape3), "scale": Buffer((outer, 1, inner)),
                "norm": Buffer((1,)),  # the GPU pass's normalizer, from forward to backward
                **label_buffers(self.shape3)}

    def flops(self):
        return 6 * math.prod(self.shape3)  # softmax, then one masked pick

    def forward_cpu(self, io: StepIO):
        count = self.softmax_and_labels(io)
        picked = io.buf["scale"]
        np.sum(io.buf["prob"], axis=1, keepdims=True, where=io.buf["onehot"], out=picked)
        np.maximum(picked, FLT_MIN, out=picked)
        np.log(picked, out=picked)
        np.multiply(picked, io.buf["valid"], out=picked)
        self.write_loss(io, picked.sum(), count)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]  # bottom 1 (the label) never gets a gradient
        if dx is None:
            return
        valid = io.buf["valid"]
        weight = float(io.top_diff[0].reshape(-1)[0])
        dx3 = dx.reshape(self.shape3)
        np.subtract(io.buf["prob"], io.buf["onehot"], out=dx3)
        np.multiply(dx3, valid, out=dx3)
        dx3 *= weight / self.normalizer(int(np.count_nonzero(valid)))

    def forward_gpu(self, io: StepIO):
        buf = io.buf
        io.gpu.launch_blocks(KERNELS, "softmax_loss_forward", buf["partials"].size, BLOCK,
                             buf["partials"], buf["counts"], buf["prob"], buf["label"],
                             io.bottom[0], io.bottom[1], *self.forward_sizes())
        self.finish_gpu(io)

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        _, c, inner = self.shape3
        io.gpu.launch(KERNELS, "softmax_loss_backward", dx.size, dx, io.buf["prob"],
                      io.buf["label"], io.buf["norm"], io.top_diff[0], np.int64(dx.size),
                      np.int32(c), np.int64(inner))
