"""InfogainLoss: SoftmaxWithLoss generalised by an "information gain" matrix H (K x K).

As in current Caffe, bottom 0 holds scores: a softmax over ``axis`` makes probabilities ``p``
(the optional second top), and ``loss = -sum_k H[label, k] log(max(p_k, 1e-20)) / norm`` over
the positions whose label is not ``ignore_label``; H = I gives SoftmaxWithLoss (with a smaller
log floor).  ``normalization`` defaults to VALID; the legacy ``normalize`` is refused, as Caffe
does for this layer.  H comes from ``source`` (a binaryproto BlobProto, loaded at compile time
and resolved like a data path) or, with three bottoms, from bottom 2, which takes no gradient.
The gradient reaches the scores only: ``(p_l sum_k H[label, k] - H[label, l]) * loss_weight /
norm``.

The GPU pass (``infogain_loss.cu``) is a two-stage reduction forward (``loss.cuh``: a grid
writing partial losses and counts, then one block adding them) that keeps the probabilities, a
code per label, each row's sum of H[label] and the normalizer, and one elementwise kernel
backward.  A counted label outside ``[0, K)``, which the CPU pass refuses,
makes the loss and the gradient NaN.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from trainnet.data.paths import candidates
from trainnet.errors import TrainnetError
from trainnet.formats.blobproto import load_blob
from trainnet.layers.base import Buffer, StepIO, count_tops, register
from trainnet.layers.loss import LOG_THRESHOLD, LossParams, loss_weight
from trainnet.layers.softmax_loss import SoftmaxLabelLoss, label_buffers, label_setup
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class InfogainLossParams(LossParams):  # infogain_loss_param's fields, then loss_param's
    source: Optional[str] = None
    axis: int = 1


def load_infogain(path) -> np.ndarray:
    """The matrix stored in a binaryproto BlobProto file."""
    return np.asarray(load_blob(path), dtype=np.float32)


@register("InfogainLoss")
class InfogainLoss(SoftmaxLabelLoss):
    Params = InfogainLossParams
    caffe_params = {"infogain_loss_param": ("source", "axis"), "loss_param": None}
    num_bottoms = (2, 3)
    no_grad_bottoms = (1, 2)  # the label and H
    backward_reads_bottom = False  # unless H is bottom 2 (set in setup)

    def setup(self, bottom_shapes):
        if self.p.normalize is not None:
            raise self.error("normalize is deprecated for InfogainLoss (Caffe refuses it); "
                             "use normalization")
        self.shape3 = label_setup(self, bottom_shapes, self.p.axis)
        k = self.shape3[1]
        self.H: Optional[np.ndarray] = None
        if len(bottom_shapes) == 3:
            if self.p.source:
                raise self.error("H is given twice, by infogain_loss_param.source and by bottom 2 "
                                 "(Caffe would ignore the source); give one")
            if math.prod(bottom_shapes[2]) != k * k:
                raise self.error(f"bottom 2 (the infogain matrix H) must be {k} x {k} for {k} "
                                 f"classes, got shape {bottom_shapes[2]}")
            self.backward_reads_bottom = True  # the GPU backward reads H from bottom 2
        else:
            self.H = self._load(k)
        return [(), bottom_shapes[0]][:count_tops(self)]

    def _load(self, k: int) -> np.ndarray:
        source = self.p.source
        if not source:
            raise self.error("infogain_loss_param.source (a binaryproto file holding H) is "
                             "required unless H is given as bottom 2")
        places = candidates(source, self.data_root)
        path = next((p for p in places if p.is_file()), None)
        if path is None:
            raise self.error(f"infogain_loss_param.source '{source}' not found (tried "
                             f"{', '.join(map(str, places))})")
        try:
            h = load_infogain(path)
        except (TrainnetError, OSError, ValueError) as exc:
            raise self.error(f"infogain_loss_param.source: {exc}") from None
        if h.size != k * k:
            raise self.error(f"infogain_loss_param.source '{source}': the infogain matrix H must "
                             f"be {k} x {k} for {k} classes, got shape {h.shape}")
        return np.ascontiguousarray(h.reshape(k, k))

    def make_state(self, rng, device=None):
        """H from ``source`` on the device the net runs on (None when H is bottom 2)."""
        if self.H is None or device is None or not device.is_gpu:
            return self.H
        h = device.zeros(self.H.shape, np.float32)
        device.upload(h, self.H)
        return h

    def buffers_gpu(self, ctx):  # and each row's sum of H[label]
        outer, _, inner = self.shape3
        return {**self.gpu_buffers(), "hsum": Buffer((outer * inner,))}

    def buffers_cpu(self, ctx):
        outer, k, inner = self.shape3
        return {"prob": Buffer(self.shape3), "logp": Buffer(self.shape3),
                "hrow": Buffer((outer * inner, k)), "scale": Buffer((outer, 1, inner)),
                **label_buffers(self.shape3)}

    def flops(self):
        return 9 * math.prod(self.shape3)  # softmax, then a weighted sum of logs

    def _matrix(self, io: StepIO, dtype) -> np.ndarray:
        k = self.shape3[1]
        h = (io.state if self.H is not None else io.bottom[2]).reshape(k, k)
        return h if h.dtype == dtype else h.astype(dtype)  # float64 only in gradient checks

    def _h_rows(self, io: StepIO) -> np.ndarray:
        """H[label] of every position, as an (outer, K, inner) view of ``hrow``."""
        outer, k, inner = self.shape3
        return io.buf["hrow"].reshape(outer, inner, k).transpose(0, 2, 1)

    def forward_cpu(self, io: StepIO):
        count = self.softmax_and_labels(io)
        prob, logp, hrow = io.buf["prob"], io.buf["logp"], io.buf["hrow"]
        # ignored labels may lie outside [0, K): clip them, ``valid`` drops their rows
        np.take(self._matrix(io, hrow.dtype), io.buf["label"].reshape(-1), axis=0, out=hrow,
                mode="clip")
        np.maximum(prob, LOG_THRESHOLD, out=logp)
        np.log(logp, out=logp)
        np.multiply(logp, self._h_rows(io), out=logp)
        np.multiply(logp, io.buf["valid"], out=logp)
        self.write_loss(io, logp.sum(), count)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        valid, hsum, rows = io.buf["valid"], io.buf["scale"], self._h_rows(io)
        dx3 = dx.reshape(self.shape3)
        np.sum(rows, axis=1, keepdims=True, out=hsum)
        np.multiply(io.buf["prob"], hsum, out=dx3)
        np.subtract(dx3, rows, out=dx3)
        np.multiply(dx3, valid, out=dx3)
        count = int(np.count_nonzero(valid))
        dx3 *= loss_weight(io) / self.normalizer(count)

    def forward_gpu(self, io: StepIO):
        h = io.state if self.H is not None else io.bottom[2]
        buf = io.buf
        io.gpu.launch_blocks(KERNELS, "infogain_loss_forward", buf["partials"].size, BLOCK,
                             buf["partials"], buf["counts"], buf["prob"], buf["label"],
                             buf["hsum"], io.bottom[0], io.bottom[1], h, *self.forward_sizes())
        self.finish_gpu(io)

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        _, k, inner = self.shape3
        h = io.state if self.H is not None else io.bottom[2]
        io.gpu.launch(KERNELS, "infogain_loss_backward", dx.size, dx, io.buf["prob"],
                      io.buf["label"], io.buf["hsum"], io.buf["norm"], h, io.top_diff[0],
                      np.int64(dx.size), np.int32(k), np.int64(inner))
