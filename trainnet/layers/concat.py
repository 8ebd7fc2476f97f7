"""Concat: join bottoms along one axis; backward slices the top gradient back to each bottom.

Every blob is seen as ``(outer, axis, inner)``; bottom j fills the top's axis range
``[offset_j, offset_j + axis_j)``.  On the GPU each bottom is one strided-copy launch, so the two
devices agree bit for bit.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, StepIO, register
from trainnet.layers.softmax import split_axis
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ConcatParams(Strict):
    axis: int = 1
    concat_dim: Optional[int] = Field(None, ge=0)  # legacy alias of axis (no negative values)


def legacy_axis(layer: Layer, shape, axis: int, legacy: Optional[int], legacy_name: str) -> int:
    """Caffe's ``axis`` or its legacy alias (``concat_dim``, ``slice_dim``): give one, not both."""
    if legacy is None:
        return split_axis(layer, shape, axis)[0]
    if "axis" in layer.p.model_fields_set:
        raise layer.error(f"give either axis or {legacy_name}, not both")
    if legacy >= len(shape):
        raise layer.error(f"{legacy_name} {legacy} is out of range for a {len(shape)}-D bottom "
                          f"{shape}")
    return legacy


@register("Concat")
class Concat(Layer):
    Params = ConcatParams
    caffe_params = {"concat_param": None}
    num_bottoms = (1, None)
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        first = bottom_shapes[0]
        a = legacy_axis(self, first, self.p.axis, self.p.concat_dim, "concat_dim")
        for j, shape in enumerate(bottom_shapes[1:], 1):
            if len(shape) != len(first) or shape[:a] + shape[a + 1:] != first[:a] + first[a + 1:]:
                raise self.error(f"bottom {j} has shape {shape} but bottom 0 has {first}: all "
                                 f"dims but axis {a} must match")
        self.outer, self.inner = math.prod(first[:a]), math.prod(first[a + 1:])
        self.sizes = [s[a] for s in bottom_shapes]
        self.offsets = [sum(self.sizes[:j]) for j in range(len(self.sizes))]
        return [first[:a] + (sum(self.sizes),) + first[a + 1:]]

    def _top3(self, top: np.ndarray) -> np.ndarray:
        return top.reshape(self.outer, sum(self.sizes), self.inner)

    def forward_cpu(self, io: StepIO):
        y = self._top3(io.top[0])
        for x, off, n in zip(io.bottom, self.offsets, self.sizes):
            np.copyto(y[:, off:off + n], x.reshape(self.outer, n, self.inner))

    def backward_cpu(self, io: StepIO):
        dy = self._top3(io.top_diff[0])
        for dx, off, n in zip(io.bottom_diff, self.offsets, self.sizes):
            if dx is not None:
                np.copyto(dx.reshape(self.outer, n, self.inner), dy[:, off:off + n])

    def forward_gpu(self, io: StepIO):
        top_chunk = np.int64(sum(self.sizes) * self.inner)
        for x, off, n in zip(io.bottom, self.offsets, self.sizes):
            io.gpu.launch(KERNELS, "concat_forward", x.size, io.top[0], x, np.int64(n * self.inner),
                          top_chunk, np.int64(off * self.inner), np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        top_chunk = np.int64(sum(self.sizes) * self.inner)
        for dx, off, n in zip(io.bottom_diff, self.offsets, self.sizes):
            if dx is not None:
                io.gpu.launch(KERNELS, "concat_backward", dx.size, dx, io.top_diff[0],
                              np.int64(n * self.inner), top_chunk, np.int64(off * self.inner),
                              np.int64(dx.size))
