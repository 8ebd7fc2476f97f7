"""Split: copy one blob to several consumers; backward sums their gradients.

The planner inserts it wherever a blob feeds more than one layer.  On the GPU forward is one
device-to-device copy per top, and backward one kernel that sums up to four top gradients
(more take a launch per four), adding in the CPU pass's order so the two agree exactly.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import Layer, StepIO, count_tops, register
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)
PER_LAUNCH = 4  # top gradients summed by one split_backward launch


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

    def forward_gpu(self, io: StepIO):
        for y in io.top:
            io.gpu.copy(y, io.bottom[0])

    def backward_gpu(self, io: StepIO):
        dx, gpu = io.bottom_diff[0], io.gpu
        if dx is None:
            return
        diffs = [d for d in io.top_diff if d is not None]
        if not diffs:
            gpu.fill(dx, 0.0)
            return
        if len(diffs) == 1:
            gpu.copy(dx, diffs[0])
            return
        for start in range(0, len(diffs), PER_LAUNCH):
            group = diffs[start:start + PER_LAUNCH]
            padded = group + [group[0]] * (PER_LAUNCH - len(group))  # never read
            gpu.launch(KERNELS, "split_backward", dx.size, dx, *padded, np.int32(len(group)),
                       np.int32(start > 0), np.int64(dx.size))
