"""LRN: Caffe's local response normalization, ``y = x * scale^-beta``, of a 4-D NCHW bottom.

ACROSS_CHANNELS: ``scale = k + alpha/n * sum of x^2`` over the n channels centred on the
element's (zero beyond the edges).  WITHIN_CHANNEL, which Caffe builds from sub-layers (square,
AVE pooling with kernel n, pad (n-1)/2, stride 1, then power ``(1 + alpha * avg)^-beta`` and a
product), is done here directly: ``scale = 1 + alpha/n^2 * sum of x^2`` over the n x n window
centred on the element.  n^2 is Caffe's AVE divisor, the window clipped to ``H + pad``: with
stride 1 and that pad every window ends by then, so it is n^2 at the borders too.  Both regions
have the same backward (Caffe's CrossChannelBackward, which the sub-layer chain also works out
to): ``dx = dy * scale^-beta - 2 alpha beta / div * x * sum over the windows holding the element
of dy * y / scale``, div being n or n^2.

The scale is kept from forward to backward; a forward-only step keeps nothing (on the CPU it
builds the scale in the top).  The CPU pass loops over the window's taps only, each a shifted
slice of the whole batch; the GPU pass (``lrn.cu``) runs one thread per element for each pass,
summing its window in the CPU's order.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class LRNParams(Strict):
    local_size: int = Field(5, ge=1)
    alpha: float = 1.0
    beta: float = 0.75
    norm_region: Literal["ACROSS_CHANNELS", "WITHIN_CHANNEL"] = "ACROSS_CHANNELS"
    k: float = 1.0
    engine: Literal["DEFAULT", "CAFFE", "CUDNN"] = "DEFAULT"  # accepted, ignored


def _shift(d: int, size: int) -> tuple[slice, slice]:
    """Along an axis of ``size`` cells: the cells c whose neighbour c + d exists, and those
    neighbours."""
    return slice(max(0, -d), size - max(0, d)), slice(max(0, d), size + min(0, d))


@register("LRN")
class LRN(Layer):
    Params = LRNParams
    caffe_params = {"lrn_param": None}
    backward_reads_top = True  # dy * y / scale, as Caffe

    def setup(self, bottom_shapes):
        p = self.p
        if p.local_size % 2 == 0:
            raise self.error(f"local_size {p.local_size}: LRN only supports odd values")
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"expects a 4-D NCHW bottom, got {len(shape)}-D {shape}")
        half = (p.local_size - 1) // 2
        if p.norm_region == "ACROSS_CHANNELS":
            self.radius = (half, 0)  # (channels, rows and columns)
            self.divisor = p.local_size
        else:
            if p.k != 1:
                raise self.error(f"k {p.k}: WITHIN_CHANNEL has no k (its scale is "
                                 "1 + alpha * average of x^2, as in Caffe)")
            self.radius = (0, half)
            self.divisor = p.local_size ** 2
        return [shape]

    def buffers_gpu(self, ctx):
        return {} if ctx.forward_only else {"scale": Buffer(self.top_shapes[0])}

    def buffers_cpu(self, ctx):
        # work: x^2 in forward, dy * y / scale in backward
        return {**self.buffers_gpu(ctx), "work": Buffer(self.top_shapes[0])}

    def flops(self):
        rc, rs = self.radius
        window = (2 * rc + 1) * (2 * rs + 1) ** 2
        return math.prod(self.top_shapes[0]) * (2 * window + 4)

    def _taps(self):
        """(cells, their neighbours) over the whole batch, for each offset in the window, in the
        GPU's order (channels, then rows, then columns)."""
        _, C, H, W = self.top_shapes[0]
        rc, rs = self.radius
        for dc in range(-rc, rc + 1):
            for dh in range(-rs, rs + 1):
                for dw in range(-rs, rs + 1):
                    (c, c2), (h, h2), (w, w2) = _shift(dc, C), _shift(dh, H), _shift(dw, W)
                    yield (slice(None), c, h, w), (slice(None), c2, h2, w2)

    def _window_sum(self, src: np.ndarray, out: np.ndarray) -> None:
        out.fill(0)
        for cells, neighbours in self._taps():
            np.add(out[cells], src[neighbours], out=out[cells])

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        p, x, top = self.p, io.bottom[0], io.top[0]
        scale = top if io.ctx.forward_only else io.buf["scale"]
        squares = np.multiply(x, x, out=io.buf["work"])
        self._window_sum(squares, scale)
        np.multiply(scale, p.alpha / self.divisor, out=scale)
        np.add(scale, p.k, out=scale)
        np.power(scale, -p.beta, out=top)
        np.multiply(top, x, out=top)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        p, x, dy, scale, ratio = self.p, io.bottom[0], io.top_diff[0], io.buf["scale"], io.buf["work"]
        np.multiply(dy, io.top[0], out=ratio)
        np.divide(ratio, scale, out=ratio)
        self._window_sum(ratio, dx)  # the windows holding an element are those centred near it
        np.multiply(dx, x, out=dx)
        np.multiply(dx, -2 * p.alpha * p.beta / self.divisor, out=dx)
        np.power(scale, -p.beta, out=ratio)
        np.multiply(ratio, dy, out=ratio)
        np.add(dx, ratio, out=dx)

    # --- GPU -------------------------------------------------------------------------------
    def _dims(self) -> tuple:
        _, C, H, W = self.top_shapes[0]
        return tuple(np.int32(v) for v in (C, H, W, *self.radius))

    def forward_gpu(self, io: StepIO):
        p, top = self.p, io.top[0]
        keep = not io.ctx.forward_only
        n = np.int64(top.size)
        io.gpu.launch(KERNELS, "lrn_forward", n, top, io.buf["scale"] if keep else top,
                      io.bottom[0], *self._dims(), np.float32(p.k),
                      np.float32(p.alpha / self.divisor), np.float32(p.beta), np.int32(keep), n)

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        p, n = self.p, np.int64(dx.size)
        io.gpu.launch(KERNELS, "lrn_backward", n, dx, io.top_diff[0], io.top[0], io.buf["scale"],
                      io.bottom[0], *self._dims(), np.float32(2 * p.alpha * p.beta / self.divisor),
                      np.float32(p.beta), n)
