"""Split: copy one blob to several consumers; backward sums their gradients.

The planner inserts it wherever a blob feeds more than one layer.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import Layer, StepIO, count_tops, register


@register("Split")
class Split(Layer):
    num_tops = (1, None)
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        return [bottom_shapes[0]] * count_tops(self)

    def forward_cpu(self, io: StepIO):
        for y in io.top:
            np.copyto(y, io.bottom[0])

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        diffs = [d for d in io.top_diff if d is not None]
        if not diffs:
            dx[...] = 0
        elif len(diffs) == 1:
            np.copyto(dx, diffs[0])
        else:
            np.add(diffs[0], diffs[1], out=dx)
            for d in diffs[2:]:
                dx += d
