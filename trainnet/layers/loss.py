"""What Caffe's loss layers share: ``LossParameter`` and the normalizer it selects.

``normalization`` divides the summed loss by the count of every position (FULL), of the
counted ones (VALID: those whose label is not ``ignore_label``), by the outer count (BATCH_SIZE)
or by 1 (NONE), never by less than 1.  When it is not given, the legacy ``normalize`` decides
(true: VALID, false: BATCH_SIZE), else the layer's own default (VALID for SoftmaxWithLoss and
InfogainLoss, BATCH_SIZE for SigmoidCrossEntropyLoss), as in Caffe.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional

import numpy as np

from trainnet.kernels.sources import BLOCK, kernel_source, partial_blocks
from trainnet.layers.base import Buffer, Layer, Shape, StepIO
from trainnet.netcfg.common import Strict

Normalization = Literal["FULL", "VALID", "BATCH_SIZE", "NONE"]
KERNELS = kernel_source(__file__)  # loss.cu: the second stage of every GPU loss forward
LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: the smallest probability a log is taken of


class LossParams(Strict):
    """Caffe's LossParameter.  ``normalization`` None means "not given" (see the module doc);
    a layer type sets its own ``default_normalization``."""

    default_normalization: ClassVar[str] = "VALID"
    ignore_label: Optional[int] = None
    normalization: Optional[Normalization] = None
    normalize: Optional[bool] = None

    @property
    def mode(self) -> str:
        if self.normalization is not None:
            return self.normalization
        if self.normalize is not None:
            return "VALID" if self.normalize else "BATCH_SIZE"
        return self.default_normalization


def normalizer(mode: str, outer: int, inner: int, valid_count: int) -> float:
    """Caffe's ``GetNormalizer``: what the summed loss is divided by."""
    norm = {"FULL": outer * inner, "VALID": valid_count, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return float(max(1, norm))


def row_label_setup(layer: Layer, shapes: list[Shape]) -> tuple[int, int, int]:
    """Bottom 0 as N rows of ``dim = count / N`` classes with one label per row in bottom 1
    (HingeLoss, MultinomialLogisticLoss); returns the ``(N, dim, 1)`` view that
    ``softmax_loss.read_labels`` works on."""
    scores, label = shapes[0], shapes[1]
    if not scores:
        raise layer.error("bottom 0 must have a batch axis, got a 0-d blob")
    n = scores[0]
    if math.prod(label) != n:
        raise layer.error(f"bottom 1 (label) expects {n} values (one per item of bottom 0 "
                          f"{scores}) got shape {label}")
    dim = math.prod(scores[1:])
    layer.classes = np.arange(dim).reshape(1, dim, 1)
    return n, dim, 1


def loss_weight(io) -> float:
    """The loss weight the plan seeds top 0's diff with (CPU passes; a GPU kernel reads it
    from device memory, so a replayed CUDA graph sees the current value)."""
    return float(io.top_diff[0].reshape(-1)[0])


def loss_buffers(items: int) -> dict[str, Buffer]:
    """A GPU loss forward's scratch for its two stages (``loss.cuh``) over ``items`` grid-stride
    items: each stage-1 block's partial loss and count, and the normalizer, kept for backward."""
    blocks = partial_blocks(items)
    return {"partials": Buffer((blocks,)), "counts": Buffer((blocks,), np.int64),
            "norm": Buffer((1,))}


def finish_loss_gpu(io: StepIO, fixed_norm: float, scale: float = 1.0) -> None:
    """A GPU loss forward's second stage (``loss.cu``), after the layer's first wrote
    ``partials`` (and ``counts``): top 0 = the partials' total / norm * scale, norm kept for
    backward; ``fixed_norm`` 0 normalizes by the count (at least 1)."""
    partials = io.buf["partials"]
    io.gpu.launch_blocks(KERNELS, "loss_finish", 1, BLOCK, io.top[0], io.buf["norm"], partials,
                         io.buf["counts"], np.float32(fixed_norm), np.float32(scale),
                         np.int64(partials.size))
