"""Input: a blob the user fills before each forward; it only declares the shapes.

Caffe's rule: one ``shape`` per top, or a single ``shape`` shared by every top.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from trainnet.layers.base import Layer, StepIO, register
from trainnet.netcfg.common import BlobShape, Strict


def count_tops(layer: Layer, default: int = 1) -> int:
    """How many tops the layer's config names (``default`` when built without a config)."""
    tops = getattr(layer.common, "top", None)
    return len(tops) if tops else default


# Caffe's repeated ``shape``: YAML may give one mapping or a list of them.
ShapeList = Annotated[list[BlobShape], BeforeValidator(lambda v: v if isinstance(v, list) else [v])]


class InputParams(Strict):
    shape: ShapeList = []


@register("Input")
class Input(Layer):
    Params = InputParams
    num_bottoms = (0, 0)
    num_tops = (1, None)
    is_data = True
    filled_by_user = True
    has_backward = False
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        shapes = [tuple(s.dim) for s in self.p.shape]
        if not shapes:
            raise self.error("shape: give one shape per top, or one shape for all tops")
        n = count_tops(self, default=len(shapes))
        if len(shapes) == 1:
            return shapes * n
        if len(shapes) != n:
            raise self.error(f"shape: {len(shapes)} shapes given for {n} tops; give one per top "
                             "or a single one for all")
        return shapes

    def forward_cpu(self, io: StepIO):
        pass  # the user (or the solver) writes the top blobs

    def backward_cpu(self, io: StepIO):
        pass
