"""PReLU: ``y = max(x, 0) + a_c min(x, 0)`` with a learned slope per channel (dim 1), or one
slope for every channel with ``channel_shared``.

Backward reads the bottom: ``dx = dy`` where ``x > 0`` else ``a_c dy``, and
``da_c = sum dy min(x, 0)`` over the batch and spatial positions.  Configured in place, forward
keeps a copy of the bottom for backward (the Neuron base), as Caffe's PReLU does.  On the GPU
the slope gradient is one block per slope summing its elements with ``block_sum``, which adds
in a fixed order (no atomics), so it is the same on every run.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from trainnet.layers.base import Buffer, ParamBlob, StepIO, register
from trainnet.layers.neuron import Neuron
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)
DEFAULT_FILLER = FillerParameter(type="constant", value=0.25)  # Caffe's, when none is given


class PReLUParams(Strict):
    filler: Optional[FillerParameter] = None
    channel_shared: bool = False


@register("PReLU")
class PReLU(Neuron):
    Params = PReLUParams
    caffe_params = {"prelu_param": None}

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) < 2:
            raise self.error(f"needs a bottom with at least 2 axes (N, C, ...), got {shape}")
        self.num, self.channels = shape[0], shape[1]
        self.dim = math.prod(shape[2:])
        return [shape]

    @property
    def slopes(self) -> int:
        return 1 if self.p.channel_shared else self.channels

    def param_blobs(self):
        # Caffe's channel-shared slope is a 0-axis blob of one value; here it is shape (1,).
        return [ParamBlob((self.slopes,), self.p.filler or DEFAULT_FILLER)]

    def scratch_cpu(self, ctx):
        bufs = self.top_scratch(ctx, "scaled")
        if not ctx.forward_only:
            bufs["positive"] = Buffer(self.top_shapes[0], np.bool_)
        return bufs

    def _views(self, a: np.ndarray) -> np.ndarray:
        """``a`` as (N, C, spatial)."""
        return a.reshape(self.num, self.channels, self.dim)

    def forward_cpu(self, io: StepIO):
        x, y, scaled = (self._views(a) for a in (io.bottom[0], io.top[0], io.buf["scaled"]))
        slope = io.params[0].reshape(-1, 1)
        np.minimum(x, 0, out=scaled)
        scaled *= slope
        np.maximum(x, 0, out=y)
        y += scaled

    def backward_cpu(self, io: StepIO):
        x, dy, f = (self._views(a) for a in (self.saved_bottom(io), io.top_diff[0], io.buf["scaled"]))
        da = io.param_diff[0]
        if da is not None:  # first: the bottom gradient may overwrite dy (in place)
            np.minimum(x, 0, out=f)
            f *= dy
            if self.p.channel_shared:
                np.sum(f, out=da.reshape(()))
            else:
                np.sum(f, axis=(0, 2), out=da)
        dx = io.bottom_diff[0]
        if dx is not None:
            positive = np.greater(x, 0, out=self._views(io.buf["positive"]))
            np.copyto(f, io.params[0].reshape(-1, 1))
            np.copyto(f, 1, where=positive)
            np.multiply(dy, f, out=self._views(dx))

    def forward_gpu(self, io: StepIO):
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "prelu_forward", x.size, y, x, io.params[0],
                      np.int64(self.slopes), np.int64(self.dim), np.int64(x.size))

    def backward_gpu(self, io: StepIO):
        x, dy, gpu = self.saved_bottom(io), io.top_diff[0], io.gpu
        da = io.param_diff[0]
        if da is not None:  # first: the bottom gradient may overwrite dy (in place)
            inner = self.dim * (self.channels if self.p.channel_shared else 1)
            gpu.launch_blocks(KERNELS, "prelu_slope_backward", self.slopes, BLOCK, da, dy, x,
                              np.int64(self.num), np.int64(inner),
                              np.int64(self.channels * self.dim))
        dx = io.bottom_diff[0]
        if dx is not None:
            gpu.launch(KERNELS, "prelu_backward", x.size, dx, dy, x, io.params[0],
                       np.int64(self.slopes), np.int64(self.dim), np.int64(x.size))
