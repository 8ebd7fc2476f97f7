"""Power: ``y = (shift + scale x)^power``.

Caffe's special cases: with ``power * scale == 0`` the top is the constant ``1`` (power 0) or
``shift^power`` (scale 0) and the gradient is 0; with power 1 the gradient is ``scale dy``.  Only
then does backward not read the bottom.  Otherwise ``dx = dy power scale (shift + scale x)^(power-1)``,
evaluated as written; Caffe divides the top by ``shift + scale x`` instead, which gives NaN where
that is 0 (the exact gradient there is 0 for power > 1).
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class PowerParams(Strict):
    power: float = 1.0
    scale: float = 1.0
    shift: float = 0.0


@register("Power")
class Power(Neuron):
    Params = PowerParams
    caffe_params = {"power_param": None}

    def setup(self, bottom_shapes):
        p = self.p
        self.diff_scale = np.float32(p.power) * np.float32(p.scale)
        self.constant = self.diff_scale == 0  # the top ignores the bottom
        self.backward_reads_bottom = not (self.constant or p.power == 1)
        return [bottom_shapes[0]]

    def scratch_cpu(self, ctx):
        return self.top_scratch(ctx, backward_only=("factor",)) if self.backward_reads_bottom else {}

    def _constant(self) -> np.float32:
        p = self.p
        return np.float32(1) if p.power == 0 else np.power(np.float32(p.shift), np.float32(p.power))

    def forward_cpu(self, io: StepIO):
        x, y, p = io.bottom[0], io.top[0], self.p
        if self.constant:
            y.fill(self._constant())
            return
        np.multiply(x, np.float32(p.scale), out=y)
        y += np.float32(p.shift)
        if p.power != 1:
            np.power(y, np.float32(p.power), out=y)

    def backward_cpu(self, io: StepIO):
        dy, dx, p = io.top_diff[0], io.bottom_diff[0], self.p
        if self.constant:
            dx.fill(0)
        elif p.power == 1:
            np.multiply(dy, np.float32(p.scale), out=dx)
        else:
            f = np.multiply(self.saved_bottom(io), np.float32(p.scale), out=io.buf["factor"])
            f += np.float32(p.shift)
            np.power(f, np.float32(p.power) - np.float32(1), out=f)
            f *= self.diff_scale
            np.multiply(dy, f, out=dx)

    def forward_gpu(self, io: StepIO):
        x, y, p = io.bottom[0], io.top[0], self.p
        if self.constant:
            io.gpu.fill(y, float(self._constant()))
            return
        io.gpu.launch(KERNELS, "power_forward", x.size, y, x, np.float32(p.power),
                      np.float32(p.scale), np.float32(p.shift), np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        dx, p = io.bottom_diff[0], self.p
        if self.constant:
            io.gpu.fill(dx, 0.0)
            return
        # power 1 reads no bottom: the top gradient stands in for it (never read)
        x = io.top_diff[0] if p.power == 1 else self.saved_bottom(io)
        io.gpu.launch(KERNELS, "power_backward", dx.size, dx, io.top_diff[0], x,
                      np.float32(p.power), np.float32(p.scale), np.float32(p.shift),
                      np.int64(dx.size))
