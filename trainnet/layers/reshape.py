"""Reshape: give the bottom's data a new shape (Caffe's ``reshape_param``).

``shape`` replaces the bottom axes ``[axis, axis + num_axes)`` (all from ``axis`` with
``num_axes: -1``); a 0 in it copies the bottom's dim at that place and one -1 is inferred from
the count.  The plan gives the top memory of its own, so each pass is one copy (a
device-to-device copy on the GPU).
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, StepIO, register
from trainnet.netcfg.common import Repeated, Strict


class ReshapeShape(Strict):
    """Caffe's BlobShape as ``reshape_param.shape`` uses it: 0 copies a dim, -1 infers one."""

    dim: Repeated[Annotated[int, Field(ge=-1)]] = []


class ReshapeParams(Strict):
    shape: ReshapeShape = ReshapeShape()
    axis: int = 0
    num_axes: int = Field(-1, ge=-1)


@register("Reshape")
class Reshape(Layer):
    Params = ReshapeParams
    caffe_params = {"reshape_param": None}
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        shape, p = bottom_shapes[0], self.p
        n, dims = len(shape), list(p.shape.dim)
        if dims.count(-1) > 1:
            raise self.error(f"shape {dims}: at most one dim may be -1 (inferred)")
        start = p.axis if p.axis >= 0 else n + p.axis + 1
        if not 0 <= start <= n:
            raise self.error(f"axis {p.axis} is out of range for a {n}-D bottom {shape}")
        end = n if p.num_axes == -1 else start + p.num_axes
        if end > n:
            raise self.error(f"axis {p.axis} + num_axes {p.num_axes} goes past the {n} axes of "
                             f"the bottom {shape}")
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= n:
                    raise self.error(f"shape {list(p.shape.dim)}: dim {i} is 0 (copy) but the "
                                     f"bottom {shape} has no axis {start + i} to copy")
                dims[i] = shape[start + i]
        if -1 in dims:
            known = math.prod(shape[:start]) * math.prod(shape[end:]) * \
                math.prod(d for d in dims if d != -1)
            if known == 0 or math.prod(shape) % known:
                raise self.error(f"shape {list(p.shape.dim)}: the bottom's count "
                                 f"{math.prod(shape)} ({shape}) is not divisible by the product "
                                 f"of the other dims ({known})")
            dims[dims.index(-1)] = math.prod(shape) // known
        top = shape[:start] + tuple(dims) + shape[end:]
        if math.prod(top) != math.prod(shape):
            raise self.error(f"the top shape {top} holds {math.prod(top)} values but the bottom "
                             f"{shape} holds {math.prod(shape)}")
        return [top]

    def forward_cpu(self, io: StepIO):
        np.copyto(io.top[0], io.bottom[0].reshape(io.top[0].shape))

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is not None:
            np.copyto(dx, io.top_diff[0].reshape(dx.shape))

    def forward_gpu(self, io: StepIO):
        io.gpu.copy(io.top[0], io.bottom[0])

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is not None:
            io.gpu.copy(dx, io.top_diff[0])
