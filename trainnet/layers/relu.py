"""ReLU: ``y = max(x, 0) + negative_slope * min(x, 0)``; may run in place."""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import Layer, StepIO, register
from trainnet.netcfg.common import Strict


class ReLUParams(Strict):
    negative_slope: float = 0.0


@register("ReLU")
class ReLU(Layer):
    Params = ReLUParams
    in_place_ok = True
    # Backward reads the top: y > 0 exactly where x > 0, so it works in place too.
    backward_reads_bottom = False
    backward_reads_top = True

    def setup(self, bottom_shapes):
        return [bottom_shapes[0]]

    def flops(self):
        return int(np.prod(self.top_shapes[0]))

    def forward_cpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        slope = self.p.negative_slope
        if slope == 0:
            np.maximum(x, 0, out=y)
        else:
            # y = x * (slope if x <= 0 else 1), written without a temporary
            np.multiply(x, np.where(x > 0, np.float32(1), np.float32(slope)), out=y)

    def backward_cpu(self, io: StepIO):
        y, dy, dx = io.top[0], io.top_diff[0], io.bottom_diff[0]
        slope = self.p.negative_slope
        if slope == 0:
            np.multiply(dy, y > 0, out=dx)
        else:
            np.multiply(dy, np.where(y > 0, np.float32(1), np.float32(slope)), out=dx)
