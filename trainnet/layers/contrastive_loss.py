"""ContrastiveLoss (Hadsell et al. 2006) over N pairs of feature vectors and their labels.

Bottoms: ``a`` and ``b`` (N rows of C features; any trailing axes count as features) and ``y``
(N similarity labels, truncated to an int as Caffe does: nonzero means similar).  With
``d = ||a - b||``: ``loss = sum [d^2 if similar else max(margin - d, 0)^2] / (2N)``;
``legacy_version`` uses Caffe's first form ``max(margin - d^2, 0)`` for dissimilar pairs.  The
gradients reach ``a`` and ``+-b`` (``y`` takes none) as Caffe computes them:
``(a - b) w / N`` for a similar pair, ``-(margin - d) / (d + 1e-4) (a - b) w / N`` for a
dissimilar one inside the margin (legacy: ``-(a - b) w / N``), 0 outside; the ``1e-4`` is Caffe's
guard against ``d = 0``.  Forward keeps ``a - b`` and each pair's coefficient, so backward reads
no bottom.

The GPU pass (``contrastive_loss.cu``) is a two-stage reduction forward (``loss.cuh``: a grid
writing partial sums over the pairs, one block adding them) and one elementwise kernel backward
that writes both gradients.
"""

from __future__ import annotations

import math

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.loss import finish_loss_gpu, loss_buffers, loss_weight
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class ContrastiveLossParams(Strict):
    margin: float = 1.0
    legacy_version: bool = False


@register("ContrastiveLoss")
class ContrastiveLoss(Layer):
    Params = ContrastiveLossParams
    caffe_params = {"contrastive_loss_param": None}
    num_bottoms = (3, 3)
    is_loss = True
    no_grad_bottoms = (2,)  # the similarity labels
    backward_reads_bottom = False  # backward reads the kept difference and coefficients

    def setup(self, bottom_shapes):
        a, b, y = bottom_shapes
        if not a or not b or a[0] != b[0] or math.prod(a) != math.prod(b):
            raise self.error(f"bottoms 0 {a} and 1 {b} must hold the same number of pairs and "
                             "features")
        self.n, self.c = a[0], math.prod(a[1:])
        if math.prod(y) != self.n:
            raise self.error(f"bottom 2 (similarity labels) expects {self.n} values (one per "
                             f"pair), got shape {y}")
        return [()]

    def buffers_gpu(self, ctx):
        return {"diff": Buffer((self.n, self.c)), "coef": Buffer((self.n,)),
                **loss_buffers(self.n)}

    def buffers_cpu(self, ctx):
        n, c = self.n, self.c
        return {"diff": Buffer((n, c)), "coef": Buffer((n,)), "dsq": Buffer((n,)),
                "dist": Buffer((n,)), "mdist": Buffer((n,)), "code": Buffer((n,), np.int64),
                "similar": Buffer((n,), np.bool_), "inside": Buffer((n,), np.bool_)}

    def flops(self):
        return 4 * self.n * self.c

    def forward_cpu(self, io: StepIO):
        n, c, buf = self.n, self.c, io.buf
        diff, coef, dsq, dist = buf["diff"], buf["coef"], buf["dsq"], buf["dist"]
        mdist, similar, inside = buf["mdist"], buf["similar"], buf["inside"]
        np.subtract(io.bottom[0].reshape(n, c), io.bottom[1].reshape(n, c), out=diff)
        np.einsum("ij,ij->i", diff, diff, out=dsq)
        np.copyto(buf["code"], io.bottom[2].reshape(-1), casting="unsafe")  # truncates, as Caffe
        np.not_equal(buf["code"], 0, out=similar)
        margin = self.p.margin
        if self.p.legacy_version:
            np.subtract(margin, dsq, out=mdist)            # margin - d^2
            np.maximum(mdist, 0, out=coef)
        else:
            np.sqrt(dsq, out=dist)
            np.subtract(margin, dist, out=mdist)           # margin - d
            np.maximum(mdist, 0, out=coef)
            np.multiply(coef, coef, out=coef)
        np.copyto(coef, dsq, where=similar)
        io.top[0][...] = coef.sum() / max(n, 1) / 2
        # each pair's gradient coefficient, for backward
        np.greater(mdist, 0, out=inside)
        if self.p.legacy_version:
            np.copyto(coef, inside)
            np.negative(coef, out=coef)
        else:
            dist += 1e-4
            np.divide(mdist, dist, out=coef)
            np.negative(coef, out=coef)
            np.multiply(coef, inside, out=coef)
        np.copyto(coef, 1, where=similar)

    def backward_cpu(self, io: StepIO):
        alpha = loss_weight(io) / max(self.n, 1)
        coef = io.buf["coef"].reshape(-1, 1)
        for i, sign in ((0, 1.0), (1, -1.0)):
            dx = io.bottom_diff[i]
            if dx is not None:
                dx2 = dx.reshape(self.n, self.c)
                np.multiply(io.buf["diff"], coef, out=dx2)
                dx2 *= sign * alpha

    def forward_gpu(self, io: StepIO):
        partials = io.buf["partials"]
        io.gpu.launch_blocks(KERNELS, "contrastive_loss_forward", partials.size, BLOCK, partials,
                             io.buf["diff"], io.buf["coef"], io.bottom[0], io.bottom[1],
                             io.bottom[2], np.int64(self.n), np.int64(self.c),
                             np.float32(self.p.margin), np.int32(self.p.legacy_version))
        finish_loss_gpu(io, fixed_norm=max(self.n, 1), scale=0.5)

    def backward_gpu(self, io: StepIO):
        da, db = io.bottom_diff[:2]
        if da is None and db is None:
            return
        diff = io.buf["diff"]
        io.gpu.launch(KERNELS, "contrastive_loss_backward", diff.size, diff if da is None else da,
                      diff if db is None else db, diff, io.buf["coef"], io.top_diff[0],
                      np.int32(da is not None), np.int32(db is not None), np.int64(self.n),
                      np.int64(self.c))
