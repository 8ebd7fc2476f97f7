"""Flatten: collapse axes ``[axis, end_axis]`` into one; the data is copied unchanged.

The plan gives the top memory of its own (Flatten does not run in place), so each pass is one
copy: a device-to-device copy on the GPU.
"""

from __future__ import annotations

import math

import numpy as np

from trainnet.layers.base import Layer, StepIO, register
from trainnet.netcfg.common import Strict


class FlattenParams(Strict):
    axis: int = 1
    end_axis: int = -1


@register("Flatten")
class Flatten(Layer):
    Params = FlattenParams
    caffe_params = {"flatten_param": None}
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        n = len(shape)
        start = self.p.axis + n if self.p.axis < 0 else self.p.axis
        end = self.p.end_axis + n if self.p.end_axis < 0 else self.p.end_axis
        for name, given, a in (("axis", self.p.axis, start), ("end_axis", self.p.end_axis, end)):
            if not 0 <= a < n:
                raise self.error(f"{name} {given} is out of range for a {n}-D bottom {shape}")
        if end < start:
            raise self.error(f"end_axis {self.p.end_axis} comes before axis {self.p.axis} "
                             f"in a {n}-D bottom {shape}")
        return [shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]]

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
