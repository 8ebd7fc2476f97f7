"""Accuracy: the fraction of counted positions whose true class is among the ``top_k`` scores.

Caffe's rule: a position is right when at most ``top_k`` classes (the true one included)
score ``>=`` the true class, so ties count against.  An optional second top holds the
accuracy per class (0 for a class with no counted labels).

The GPU pass (``accuracy.cu``) is a two-stage reduction that reads the labels as they come: a
grid whose blocks count hits and counted labels (per class too, with a second top) into
``counts``, then one block adding the counts exactly (int64) and dividing.  A counted label
outside ``[0, C)`` makes its accuracy NaN.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, StepIO, count_tops, register
from trainnet.layers.no_backward import NoBackward
from trainnet.layers.softmax_loss import label_buffers, label_setup, read_labels
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import BLOCK, kernel_source, partial_blocks

KERNELS = kernel_source(__file__)


class AccuracyParams(Strict):
    top_k: int = Field(1, ge=1)
    axis: int = 1
    ignore_label: Optional[int] = None


@register("Accuracy")
class Accuracy(NoBackward):
    Params = AccuracyParams
    caffe_params = {"accuracy_param": None}
    num_bottoms = (2, 2)
    num_tops = (1, 2)
    no_grad_bottoms = (1,)  # the label

    def setup(self, bottom_shapes):
        self.shape3 = label_setup(self, bottom_shapes, self.p.axis)
        c = self.shape3[1]
        if self.p.top_k > c:
            raise self.error(f"top_k {self.p.top_k} exceeds the number of classes {c}")
        return [(), (c,)][:count_tops(self)]

    def buffers_gpu(self, ctx):
        outer, c, inner = self.shape3
        per_class = c if len(self.top_shapes) > 1 else 0
        return {"counts": Buffer((partial_blocks(outer * inner), 3 + 2 * per_class), np.int64)}

    def buffers_cpu(self, ctx):
        outer, c, inner = self.shape3
        return {**label_buffers(self.shape3),
                "true_score": Buffer((outer, 1, inner)),
                "ge": Buffer(self.shape3, np.bool_),
                "rank": Buffer((outer, 1, inner), np.int64),
                "hit": Buffer((outer, 1, inner), np.bool_),
                "class_count": Buffer((c,))}

    def flops(self):
        return 2 * math.prod(self.shape3)  # one compare and one count per score

    def forward_cpu(self, io: StepIO):
        scores = io.bottom[0].reshape(self.shape3)
        onehot, true_score, ge = io.buf["onehot"], io.buf["true_score"], io.buf["ge"]
        rank, hit = io.buf["rank"], io.buf["hit"]
        count = read_labels(self, io, self.p.ignore_label)
        np.sum(scores, axis=1, keepdims=True, where=onehot, out=true_score)
        np.greater_equal(scores, true_score, out=ge)
        np.sum(ge, axis=1, keepdims=True, out=rank)  # classes scoring >= the true one
        np.less_equal(rank, self.p.top_k, out=hit)
        np.logical_and(hit, io.buf["valid"], out=hit)
        io.top[0][...] = np.count_nonzero(hit) / count if count else 0.0
        if len(io.top) > 1:
            per_class, class_count = io.top[1], io.buf["class_count"]
            np.sum(onehot, axis=(0, 2), out=class_count)
            np.sum(onehot, axis=(0, 2), where=hit, out=per_class)
            np.maximum(class_count, 1, out=class_count)  # no labels of a class: 0 hits / 1
            np.divide(per_class, class_count, out=per_class)

    def forward_gpu(self, io: StepIO):
        outer, c, inner = self.shape3
        ignore = self.p.ignore_label
        counts, per_class = io.buf["counts"], np.int32(c if len(io.top) > 1 else 0)
        blocks = counts.shape[0]
        io.gpu.launch_blocks(KERNELS, "accuracy_counts", blocks, BLOCK, counts, io.bottom[0],
                             io.bottom[1], np.int64(outer * inner), np.int32(c), np.int64(inner),
                             np.int32(self.p.top_k), np.int32(ignore is not None),
                             np.int64(ignore or 0), per_class)
        # Without a second top the kernel writes no per-class value; top 0 stands in for it.
        io.gpu.launch_blocks(KERNELS, "accuracy_finish", 1, BLOCK, io.top[0], io.top[-1], counts,
                             np.int64(blocks), per_class)
