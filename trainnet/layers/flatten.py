"""Flatten: collapse axes ``[axis, end_axis]`` into one; the data is copied unchanged.

A Reshape with a shape rule of its own: its passes are Reshape's copies.
"""

from __future__ import annotations

import math

from trainnet.layers.base import register
from trainnet.layers.reshape import Reshape
from trainnet.netcfg.common import Strict


class FlattenParams(Strict):
    axis: int = 1
    end_axis: int = -1


@register("Flatten")
class Flatten(Reshape):
    Params = FlattenParams
    caffe_params = {"flatten_param": None}

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
