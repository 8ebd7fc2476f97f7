"""Silence: consume blobs nobody else reads, so they are not net outputs; no tops.

Forward does nothing.  Backward, which runs only under ``force_backward`` (the layer feeds no
loss), zeros the bottoms' gradients, as Caffe's does.
"""

from __future__ import annotations

from trainnet.layers.base import Layer, StepIO, register


@register("Silence")
class Silence(Layer):
    num_bottoms = (1, None)
    num_tops = (0, 0)
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        return []

    def forward_cpu(self, io: StepIO):
        pass

    def backward_cpu(self, io: StepIO):
        for dx in io.bottom_diff:
            if dx is not None:
                dx.fill(0)

    def forward_gpu(self, io: StepIO):
        pass

    def backward_gpu(self, io: StepIO):
        for dx in io.bottom_diff:
            if dx is not None:
                io.gpu.fill(dx, 0.0)
