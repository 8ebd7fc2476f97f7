"""Pooling: Caffe's MAX and AVE pooling over 2-D windows of an NCHW bottom.

The bottom is copied into a padded buffer large enough for Caffe's ceil-rounded windows
(``-FLT_MAX`` around it for MAX, so padding never wins; zeros for AVE).  Every window is then
handled at once through strided views, with a Python loop over the kh*kw kernel taps only.
MAX keeps the winning tap of each window (ties: the first in row-major order, as Caffe's strict
``>``) for backward; AVE divides by Caffe's window size clipped to ``H + pad``, computed once.

A forward-only step keeps nothing for a backward and needs no buffer at all: each tap's view is
clipped to the windows in which it falls inside the bottom, so padding is never copied, and MAX
is a plain ``np.maximum`` over the taps, starting from Caffe's ``-FLT_MAX`` where a window is
clipped.

The GPU pass (``pooling.cu``) runs one thread per top cell forward and, backward, one per bottom
cell gathering from the windows that cover it.  It keeps the same argmax (the winning tap as a
float, in the same buffer) and adds in the same order as the CPU pass, so the two agree bit for
bit, ties included; it needs neither the padded copy nor the masks.
"""

from __future__ import annotations

import itertools

import numpy as np

from trainnet.layers.base import Buffer, Layer, StepIO, fill_padded, register
from trainnet.layers.pool_geometry import FLT_MAX, PoolingParams, clip_tap, window_geometry
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


@register("Pooling")
class Pooling(Layer):
    Params = PoolingParams
    caffe_params = {"pooling_param": None}
    backward_reads_bottom = False  # MAX keeps its argmax; AVE needs nothing

    def setup(self, bottom_shapes):
        p = self.p
        if p.pool == "STOCHASTIC":
            raise self.error("pool: STOCHASTIC is not supported (use MAX or AVE)")
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"expects a 4-D NCHW bottom, got {len(shape)}-D {shape}")
        N, C, H, W = shape
        Ho, Wo, kh, kw, ph, pw, sh, sw = window_geometry(self, shape)
        self.N, self.C, self.H, self.W, self.Ho, self.Wo = N, C, H, W, Ho, Wo
        self.kh, self.kw, self.ph, self.pw, self.sh, self.sw = kh, kw, ph, pw, sh, sw
        # Room for every window, ceil-rounded ones included, around the bottom.
        self.Hp = max(H + 2 * ph, (Ho - 1) * sh + kh)
        self.Wp = max(W + 2 * pw, (Wo - 1) * sw + kw)
        self.padded = (self.Hp, self.Wp) != (H, W)
        if p.pool == "AVE":
            def sizes(out, size, k, pad, s):
                start = np.arange(out) * s - pad
                return np.minimum(start + k, size + pad) - start
            self.divisor = np.outer(sizes(Ho, H, kh, ph, sh), sizes(Wo, W, kw, pw, sw)).astype(np.float32)
        return [(N, C, Ho, Wo)]

    def buffers_gpu(self, ctx):  # pooling.cu keeps MAX's argmax and needs nothing else
        if ctx.forward_only or self.p.pool != "MAX":
            return {}
        return {"argmax": Buffer((self.N, self.C, self.Ho, self.Wo))}

    def buffers_cpu(self, ctx):
        if ctx.forward_only:
            return {}
        top = (self.N, self.C, self.Ho, self.Wo)
        bufs = {}
        if self.padded:
            bufs["pad"] = Buffer((self.N, self.C, self.Hp, self.Wp))
        if self.p.pool == "MAX":
            # The winning tap i*kw + j of each window, as a float so that forward and backward
            # update it with branch-free arithmetic (masked writes mispredict on random data);
            # the GPU pass keeps the same there.
            bufs["argmax"] = Buffer(top)
            bufs["mask"] = Buffer(top)
        else:
            bufs["scaled"] = Buffer(top)  # top diff / window size
        return bufs

    def flops(self):
        outputs = self.N * self.C * self.Ho * self.Wo
        return outputs * self.kh * self.kw + (outputs if self.p.pool == "AVE" else 0)

    def _taps(self, a: np.ndarray):
        """(tap index, the (N, C, Ho, Wo) view of ``a`` that tap touches) in row-major order."""
        hs, ws = self.sh * (self.Ho - 1) + 1, self.sw * (self.Wo - 1) + 1
        for i in range(self.kh):
            for j in range(self.kw):
                yield i * self.kw + j, a[:, :, i:i + hs:self.sh, j:j + ws:self.sw]

    def _clipped_taps(self, x: np.ndarray, top: np.ndarray):
        """(top cells, cells of the unpadded bottom ``x``) of each tap in row-major order, both
        clipped to the windows in which that tap falls inside ``x``; taps that never do are left
        out."""
        rows = [clip_tap(i, self.ph, self.sh, self.H, self.Ho) for i in range(self.kh)]
        cols = [clip_tap(j, self.pw, self.sw, self.W, self.Wo) for j in range(self.kw)]
        for r in rows:
            for c in cols:
                if r and c:
                    yield top[:, :, r[0], c[0]], x[:, :, r[1], c[1]]

    def _source(self, io: StepIO) -> np.ndarray:
        if not self.padded:
            return io.bottom[0]
        fill_padded(io.buf["pad"], io.bottom[0], self.ph, self.pw,
                    -FLT_MAX if self.p.pool == "MAX" else 0)
        return io.buf["pad"]

    def _interior(self, a: np.ndarray) -> np.ndarray:
        return a[:, :, self.ph:self.ph + self.H, self.pw:self.pw + self.W]

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        if io.ctx.forward_only:
            self._forward_only(io.bottom[0], io.top[0])
            return
        x, top = self._source(io), io.top[0]
        taps = self._taps(x)
        np.copyto(top, next(taps)[1])
        if self.p.pool == "MAX":
            argmax, mask = io.buf["argmax"], io.buf["mask"]
            argmax.fill(0)
            for t, cells in taps:  # t grows, so max(argmax, t * (cells > top)) keeps the first max
                np.greater(cells, top, out=mask)
                np.maximum(top, cells, out=top)
                np.multiply(mask, t, out=mask)
                np.maximum(argmax, mask, out=argmax)
        else:
            for _, cells in taps:
                np.add(top, cells, out=top)
            np.divide(top, self.divisor, out=top)

    def _forward_only(self, x: np.ndarray, top: np.ndarray):
        """The same top as the full forward, with no argmax and no padded copy.  Taps combine in
        row-major order, so AVE adds exactly what the padded sum adds, less its zeros."""
        is_max = self.p.pool == "MAX"
        taps = self._clipped_taps(x, top)
        cells_top, cells = next(taps)  # every window holds a cell of x
        if cells_top.shape == top.shape:
            np.copyto(top, cells)
        else:
            top.fill(-FLT_MAX if is_max else 0)
            taps = itertools.chain([(cells_top, cells)], taps)
        combine = np.maximum if is_max else np.add
        for cells_top, cells in taps:
            combine(cells_top, cells, out=cells_top)
        if not is_max:
            np.divide(top, self.divisor, out=top)

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        acc = io.buf["pad"] if self.padded else dx
        acc.fill(0)
        if self.p.pool == "MAX":
            dtop, argmax, mask = io.top_diff[0], io.buf["argmax"], io.buf["mask"]
            for t, cells in self._taps(acc):
                np.equal(argmax, t, out=mask)
                np.multiply(mask, dtop, out=mask)
                np.add(cells, mask, out=cells)
        else:
            scaled = io.buf["scaled"]
            np.divide(io.top_diff[0], self.divisor, out=scaled)
            for _, cells in self._taps(acc):
                np.add(cells, scaled, out=cells)
        if self.padded:
            np.copyto(dx, self._interior(acc))

    # --- GPU -------------------------------------------------------------------------------
    def _dims(self) -> tuple:
        return tuple(np.int32(v) for v in (self.H, self.W, self.Ho, self.Wo, self.kh, self.kw,
                                           self.sh, self.sw, self.ph, self.pw))

    def forward_gpu(self, io: StepIO):
        x, top = io.bottom[0], io.top[0]
        n = np.int64(top.size)
        if self.p.pool == "AVE":
            io.gpu.launch(KERNELS, "pooling_forward_ave", n, top, x, n, *self._dims())
        elif io.ctx.forward_only:
            io.gpu.launch(KERNELS, "pooling_forward_max_only", n, top, x, n, *self._dims())
        else:
            io.gpu.launch(KERNELS, "pooling_forward_max", n, top, io.buf["argmax"], x, n,
                          *self._dims())

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is None:
            return
        n = np.int64(dx.size)
        if self.p.pool == "AVE":
            io.gpu.launch(KERNELS, "pooling_backward_ave", n, dx, io.top_diff[0], n, *self._dims())
        else:
            io.gpu.launch(KERNELS, "pooling_backward_max", n, dx, io.top_diff[0], io.buf["argmax"],
                          n, *self._dims())
