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

from trainnet.layers.base import Layer, Shape
from trainnet.netcfg.common import Strict

Normalization = Literal["FULL", "VALID", "BATCH_SIZE", "NONE"]
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
