"""Pooling: Caffe's MAX and AVE pooling over 2-D windows of an NCHW bottom.

The CPU pass takes the bottom a chunk of planes at a time (sized for the cache), copied into
padded cells with their columns split by phase modulo the stride (``pool_geometry.Cells``;
``-FLT_MAX`` around it for MAX, so padding never wins; zeros for AVE), and handles every window
at once through one strided view per kernel tap, with no index gather: a running maximum (or
sum) over the kh*kw taps in Caffe's window order.  MAX records the winning tap of each window
(ties: the first, as Caffe's strict ``>``) in the smallest unsigned type; backward adds the top
diff, masked to the windows a tap won, into that tap's view of a zeroed padded gradient (within
one tap the views never overlap, and overlapping windows meet across taps in tap order), then
crops it.  AVE divides by Caffe's window size clipped to ``H + pad``, computed once.  The chunks
are shared among the CPU passes' thread pool (``threads.py``), each thread with its own slice of
the per-call scratch (their leading axis); every top or bottom-gradient cell lies in one chunk,
so one thread writes it, in the same order as one thread alone (a pass under ``THREAD_CELLS``
keeps to one thread).  A forward-only step keeps no argmax and needs only the cells, a chunk
per thread.

The GPU pass (``pooling.cu``) runs one thread per top cell forward and, backward, one per bottom
cell gathering from the windows that cover it.  It keeps the same argmax (the winning tap, as a
float there) and adds in the same order as the CPU pass, so the two agree bit for
bit, ties included; it needs neither the padded copy nor the masks.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers import threads
from trainnet.layers.base import Buffer, Layer, StepIO, register
from trainnet.layers.pool_geometry import FLT_MAX, Cells, PoolingParams, window_geometry
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)
CHUNK_CELLS = 1 << 18  # padded bottom cells per CPU chunk: 1 MiB of float32, in a core's L2
# cache; smaller chunks make NumPy calls so short that two threads wait on the GIL
THREAD_CELLS = 1 << 21  # fewer padded cells a pass run on one thread: on a busy machine the
# handoff to a second one can cost more (a scheduler slice) than it saves
WRITTEN = ("top", "bottom_diff", "argmax")


def _planes(io: StepIO, name: str) -> np.ndarray:
    """An NCHW array of ``io`` as (N*C, H, W) planes: a view for one the pass writes (a plan's
    blobs are contiguous; a copy would lose the writes, so that raises), else a view or a copy."""
    a = io.buf[name] if name == "argmax" else getattr(io, name)[0]
    return np.reshape(a, (-1,) + a.shape[2:], copy=False if name in WRITTEN else None)


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
        self.cells = Cells(H, W, Ho, Wo, kh, kw, ph, pw, sh, sw)
        # The fewest chunks within CHUNK_CELLS, as many for each thread, evened out.
        chunks = -(-N * C // max(1, CHUNK_CELLS // (self.cells.Hp * sw * self.cells.Wq)))
        small = N * C * self.cells.Hp * sw * self.cells.Wq < THREAD_CELLS
        self.shares = 1 if small else threads.shares(chunks)
        self.chunk = -(-N * C // (-(-chunks // self.shares) * self.shares))
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
        # Per-call scratch, a slice per thread (the leading axis) for the chunks it takes.
        top = (self.shares, self.chunk, self.Ho, self.Wo)
        bufs = {} if self.cells.direct else {
            "cells": Buffer((self.shares,) + self.cells.shape(self.chunk), scratch=True)}
        if ctx.forward_only:
            return bufs
        if self.p.pool == "MAX":
            # The winning tap of each window, kept for backward; the smallest unsigned type.
            bufs["argmax"] = Buffer((self.N, self.C, self.Ho, self.Wo),
                                    np.min_scalar_type(self.kh * self.kw - 1))
            bufs["greater"] = Buffer(top, np.bool_, scratch=True)
            bufs["tap"] = Buffer(top, bufs["argmax"].dtype, scratch=True)
        # backward: top diff where a tap won / by the window size
        bufs["masked"] = Buffer(top, scratch=True)
        return bufs

    def flops(self):
        outputs = self.N * self.C * self.Ho * self.Wo
        return outputs * self.kh * self.kw + (outputs if self.p.pool == "AVE" else 0)

    def _each_chunk(self, io: StepIO, work, *names: str) -> None:
        """``work(k, first, chunk)`` per chunk of ``self.chunk`` planes, ``chunk`` holding the
        (planes, ...) slices of the named io arrays, on thread k of the shared pool (``first``:
        its first chunk).  Chunks are disjoint, so each cell is written by one thread."""
        arrays = [_planes(io, name) for name in names]

        def share(starts, k):
            for m, lo in enumerate(starts):
                work(k, m == 0, [a[lo:lo + self.chunk] for a in arrays])
        threads.each(share, list(range(0, self.N * self.C, self.chunk)), self.shares)

    def _cells(self, io: StepIO, k: int, x: np.ndarray, fill: float, first: bool) -> np.ndarray:
        """The chunk ``x`` in the cells layout, padded with ``fill``, in thread k's scratch:
        the bottom itself where it already has that layout."""
        if self.cells.direct:
            return x[:, :, None, :]
        scratch = io.buf["cells"][k]
        if first:  # the border, never overwritten by a chunk, is set once a pass
            self.cells.fill_border(scratch, fill)
        self.cells.load(scratch[:len(x)], x)
        return scratch[:len(x)]

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        is_max = self.p.pool == "MAX"
        keep = is_max and not io.ctx.forward_only
        combine = np.maximum if is_max else np.add

        def chunk(k, first, arrays):
            x, top = arrays[:2]
            taps = self.cells.taps(self._cells(io, k, x, -FLT_MAX if is_max else 0, first))
            np.copyto(top, next(taps)[1])
            if keep:
                argmax = arrays[2]
                greater, tap = io.buf["greater"][k, :len(x)], io.buf["tap"][k, :len(x)]
                argmax.fill(0)
                for t, cells in taps:  # t grows, so max(argmax, t * (cells > top)) keeps the first max
                    np.greater(cells, top, out=greater)
                    np.maximum(top, cells, out=top)
                    np.multiply(greater.view(np.uint8), t, out=tap, dtype=tap.dtype)
                    np.maximum(argmax, tap, out=argmax)
                return
            for _, cells in taps:
                combine(top, cells, out=top)
            if not is_max:
                np.divide(top, self.divisor, out=top)
        self._each_chunk(io, chunk, *(("bottom", "top", "argmax") if keep else ("bottom", "top")))

    def backward_cpu(self, io: StepIO):
        if io.bottom_diff[0] is None:
            return
        is_max = self.p.pool == "MAX"

        def chunk(k, first, arrays):
            dx, dtop = arrays[:2]
            masked = io.buf["masked"][k, :len(dx)]
            acc = dx[:, :, None, :] if self.cells.direct else io.buf["cells"][k, :len(dx)]
            acc.fill(0)
            if not is_max:
                np.divide(dtop, self.divisor, out=masked)
            for t, cells in self.cells.taps(acc):  # a tap's cells never overlap: adds are exact
                if is_max:
                    np.equal(arrays[2], t, out=masked)
                    np.multiply(masked, dtop, out=masked)
                np.add(cells, masked, out=cells)
            if not self.cells.direct:
                self.cells.store(dx, acc)
        names = ("bottom_diff", "top_diff", "argmax") if is_max else ("bottom_diff", "top_diff")
        self._each_chunk(io, chunk, *names)

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
