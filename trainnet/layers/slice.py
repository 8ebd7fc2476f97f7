"""Slice: cut a bottom along one axis into several tops; backward joins their gradients.

The cut points are ``slice_point`` (one fewer than the tops), or, without them, the axis divided
evenly among the tops.  Blobs are seen as ``(outer, axis, inner)``; on the GPU each top is one
strided-copy launch, so the two devices agree bit for bit.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, StepIO, count_tops, register
from trainnet.layers.concat import legacy_axis
from trainnet.netcfg.common import Strict, UIntList
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class SliceParams(Strict):
    axis: int = 1
    slice_point: UIntList = []
    slice_dim: Optional[int] = Field(None, ge=0)  # legacy alias of axis (no negative values)


@register("Slice")
class Slice(Layer):
    Params = SliceParams
    caffe_params = {"slice_param": None}
    num_tops = (1, None)
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        shape, points = bottom_shapes[0], list(self.p.slice_point)
        a = legacy_axis(self, shape, self.p.axis, self.p.slice_dim, "slice_dim")
        n_tops, dim = count_tops(self, default=len(points) + 1), shape[a]
        if points:
            if len(points) != n_tops - 1:
                raise self.error(f"slice_point: {len(points)} points for {n_tops} tops; give one "
                                 "fewer points than tops")
            bounds = [0] + points + [dim]
            if any(lo >= hi for lo, hi in zip(bounds, bounds[1:])):
                raise self.error(f"slice_point {points} must increase strictly within (0, {dim}), "
                                 f"the size of axis {a} of the bottom {shape}")
            self.sizes = [hi - lo for lo, hi in zip(bounds, bounds[1:])]
        else:
            if dim % n_tops:
                raise self.error(f"{n_tops} tops do not divide axis {a} of the bottom {shape} "
                                 f"evenly ({dim}); give slice_point")
            self.sizes = [dim // n_tops] * n_tops
        self.offsets = [sum(self.sizes[:j]) for j in range(n_tops)]
        self.outer, self.inner = math.prod(shape[:a]), math.prod(shape[a + 1:])
        return [shape[:a] + (n,) + shape[a + 1:] for n in self.sizes]

    def _bottom3(self, bottom: np.ndarray) -> np.ndarray:
        return bottom.reshape(self.outer, sum(self.sizes), self.inner)

    def forward_cpu(self, io: StepIO):
        x = self._bottom3(io.bottom[0])
        for y, off, n in zip(io.top, self.offsets, self.sizes):
            np.copyto(y.reshape(self.outer, n, self.inner), x[:, off:off + n])

    def backward_cpu(self, io: StepIO):
        if io.bottom_diff[0] is None:
            return
        dx = self._bottom3(io.bottom_diff[0])
        for dy, off, n in zip(io.top_diff, self.offsets, self.sizes):
            if dy is None:  # a top whose gradient nobody computes contributes zeros
                dx[:, off:off + n] = 0
            else:
                np.copyto(dx[:, off:off + n], dy.reshape(self.outer, n, self.inner))

    def forward_gpu(self, io: StepIO):
        bottom_chunk = np.int64(sum(self.sizes) * self.inner)
        for y, off, n in zip(io.top, self.offsets, self.sizes):
            io.gpu.launch(KERNELS, "slice_forward", y.size, y, io.bottom[0],
                          np.int64(n * self.inner), bottom_chunk, np.int64(off * self.inner),
                          np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        bottom_chunk = np.int64(sum(self.sizes) * self.inner)
        for dy, off, n in zip(io.top_diff, self.offsets, self.sizes):
            count = self.outer * n * self.inner
            # a missing top gradient: dx is passed as a pointer never read
            io.gpu.launch(KERNELS, "slice_backward", count, dx, dx if dy is None else dy,
                          np.int32(dy is not None), np.int64(n * self.inner), bottom_chunk,
                          np.int64(off * self.inner), np.int64(count))
