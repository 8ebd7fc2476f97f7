"""What Caffe's elementwise "neuron" layers share: one bottom, one top of the same shape.

Caffe lets every neuron layer run in place (``top`` == ``bottom``).  One whose backward reads
its bottom would then read its own output; so when such a layer is configured in place and runs
backward, forward first saves the bottom in a buffer that lives until backward (as Caffe's
PReLU does) and backward reads that copy.  Every neuron type is therefore correct in place.

The CPU passes are written so that the top may share the bottom's memory and the bottom
gradient the top gradient's: a pass reads each element of its input before it writes that
element of its output (a backward computes its factor in scratch, then multiplies once).
"""

from __future__ import annotations

import math

from trainnet.layers.base import Buffer, Layer, StepContext, StepIO, save_bottom


class Neuron(Layer):
    """Base of the one-bottom one-top elementwise layers."""

    in_place_ok = True

    def setup(self, bottom_shapes):
        return [bottom_shapes[0]]

    @property
    def count(self) -> int:
        return math.prod(self.top_shapes[0])

    def flops(self):
        return self.count

    def keeps_bottom(self, ctx: StepContext) -> bool:
        """In place while backward reads the bottom: forward saves a copy of it."""
        return ctx.in_place and self.backward_reads_bottom and not ctx.forward_only

    def scratch_cpu(self, ctx: StepContext) -> dict[str, Buffer]:
        """The type's own buffers for its CPU pass."""
        return {}

    def scratch_gpu(self, ctx: StepContext) -> dict[str, Buffer]:
        """The type's own buffers for its GPU pass (the kernels need none)."""
        return {}

    def buffers_cpu(self, ctx):
        return self._with_bottom(self.scratch_cpu(ctx), ctx)

    def buffers_gpu(self, ctx):
        return self._with_bottom(self.scratch_gpu(ctx), ctx)

    def _with_bottom(self, bufs: dict[str, Buffer], ctx: StepContext) -> dict[str, Buffer]:
        if self.keeps_bottom(ctx):
            bufs = {**bufs, "bottom": Buffer(self.top_shapes[0])}
        return bufs

    def top_scratch(self, ctx: StepContext, *names: str,
                    backward_only: tuple[str, ...] = ()) -> dict[str, Buffer]:
        """Top-shaped float32 scratch (``backward_only`` ones when a backward runs)."""
        wanted = list(names) + ([] if ctx.forward_only else list(backward_only))
        return {n: Buffer(self.top_shapes[0]) for n in wanted}

    def saved_bottom(self, io: StepIO):
        """The bottom as forward saw it: its copy when the layer runs in place."""
        return io.buf["bottom"] if self.keeps_bottom(io.ctx) else io.bottom[0]

    def forward(self, io: StepIO, device) -> None:
        if self.keeps_bottom(io.ctx):
            save_bottom(io, device)
        super().forward(io, device)

    def backward(self, io: StepIO, device) -> None:
        if io.bottom_diff[0] is None and all(d is None for d in io.param_diff):
            return
        super().backward(io, device)
