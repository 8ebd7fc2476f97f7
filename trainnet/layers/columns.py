"""The column machinery of Convolution: its column buffer's layout and chunks, and the CPU's
im2col and col2im.

Forward copies the windows of the (zero-padded) bottom once into a column buffer laid out
``(group, C/group*kh*kw, N*Ho*Wo)``, multiplies every group's weight ``(num_output/group,
C/group*kh*kw)`` by its columns in one stacked GEMM into an output-ordered buffer ``(num_output,
N*Ho*Wo)`` and transposes that into the NCHW top, adding the bias in the same pass.  There is no
loop over groups, images or pixels.  The buffers are per-call scratch in a workspace all layers
share, so backward recomputes the columns from the bottom for the weight gradient; the bottom
gradient is col2im as one strided add per kernel tap (with one output channel per group its GEMM
is an outer product: a broadcast multiply).

On the CPU, training with batch-first columns runs the batch in chunks of images whose columns
and staging output fit ``cpu_chunk_bytes`` (``cpu_chunk``): im2col writes a chunk that the GEMMs
then read from the cache, one GEMM of each kind per chunk (the weight and bias gradients summed
over the chunks), and col2im adds a chunk back; for CIFAR-10 quick's conv1/conv2 about 25% off
the forward and 10-25% off the backward against one batch-sized pass (issue 14).

A forward-only step keeps no columns for a backward, so it runs the batch in a few chunks of
images whose scratch fits ``forward_only_bytes``: a bounded buffer instead of one that grows with
the batch (1 GiB for AlexNet's conv1 at batch 256).  Small images keep the layout above, chunk
by chunk; larger ones (batch-first) take image-major columns ``(n, group, C/group*kh*kw + 1,
Ho*Wo)`` whose last row is ones, against the weight with the bias beside it, so that one stacked
GEMM writes every image's NCHW top, bias added: no staging buffer, no transpose, no bias pass.

``Columns`` is a mixin: it reads the geometry Convolution's ``setup`` sets (``C``, ``kh``,
``Ho``, ``batch_last`` ...).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from trainnet.layers.base import StepIO


class Columns:
    """im2col / col2im over NumPy views, for a layer with Convolution's geometry."""

    forward_only_bytes: ClassVar[int] = 2 << 20  # float32 columns + staging output of one chunk
    cpu_chunk_bytes: ClassVar[int] = 8 << 20  # the same when training on the CPU (issue 14)

    def _image_major(self, ctx) -> bool:
        """Forward-only with large images: per-image GEMMs straight into the top."""
        return ctx.forward_only and not self.batch_last

    def _image_rows(self) -> int:
        """Image-major column rows per group: the windows, and ones for the bias."""
        return self.ckk + self.p.bias_term

    def chunk(self, ctx) -> int:
        """Images per pass of the forward: the batch, or when forward-only as many as fit the
        budget (at least one), evened out over the fewest chunks that cover the batch."""
        if not ctx.forward_only:
            return self.N
        g = self.p.group
        rows = g * self._image_rows() if self._image_major(ctx) else g * self.ckk + self.p.num_output
        return self._images_within(self.forward_only_bytes, rows)

    def cpu_chunk(self, ctx) -> int:
        """Images per pass of the CPU's forward and backward: when training, as many as keep
        their columns and staging output within ``cpu_chunk_bytes``, so that im2col writes and
        the GEMMs read columns still in the cache; one GEMM per chunk, not per image.  Batch-last
        columns keep the whole batch: their contiguous rows are the batch."""
        if ctx.forward_only or self.batch_last:
            return self.chunk(ctx)
        return self._images_within(self.cpu_chunk_bytes, self.p.group * self.ckk + self.p.num_output)

    def _images_within(self, budget: int, rows: int) -> int:
        """Images whose ``rows`` float32 rows of Ho*Wo fit ``budget`` (at least one), evened out
        over the fewest chunks that cover the batch."""
        chunks = -(-self.N // max(1, budget // (rows * self.Ho * self.Wo * 4)))
        return -(-self.N // chunks)

    def _internal(self, nchw: tuple) -> tuple:
        n, c, h, w = nchw
        return (c, h, w, n) if self.batch_last else (c, n, h, w)

    def _nchw(self, a: np.ndarray) -> np.ndarray:
        """An internal-layout (C, ., ., .) buffer viewed as (N, C, H, W)."""
        return a.transpose(3, 0, 1, 2) if self.batch_last else a.transpose(1, 0, 2, 3)

    def _col6(self, col: np.ndarray, n: int) -> np.ndarray:
        """The column buffer of ``n`` images viewed as (C, kh, kw, n, Ho, Wo)."""
        head = (self.C, self.kh, self.kw)
        if self.batch_last:
            return col.reshape(head + (self.Ho, self.Wo, n)).transpose(0, 1, 2, 5, 3, 4)
        return col.reshape(head + (n, self.Ho, self.Wo))

    def _top_view(self, out: np.ndarray, n: int) -> np.ndarray:
        """The output-ordered (num_output, n*Ho*Wo) buffer viewed as (n, num_output, Ho, Wo)."""
        return self._nchw(out.reshape(self._internal((n, self.p.num_output, self.Ho, self.Wo))))

    def _windows(self, x: np.ndarray) -> np.ndarray:
        """A read-only (C, kh, kw, n, Ho, Wo) view of the windows of NCHW ``x``."""
        sn, sc, sy, sx = x.strides
        return as_strided(x, shape=(self.C, self.kh, self.kw, x.shape[0], self.Ho, self.Wo),
                          strides=(sc, self.dh * sy, self.dw * sx, sn, self.sh * sy, self.sw * sx),
                          writeable=False)

    def _tap(self, a: np.ndarray, i: int, j: int) -> np.ndarray:
        """The (N, C, Ho, Wo) cells of NCHW ``a`` that kernel tap (i, j) touches."""
        y, x = i * self.dh, j * self.dw
        return a[:, :, y:y + self.sh * (self.Ho - 1) + 1:self.sh, x:x + self.sw * (self.Wo - 1) + 1:self.sw]

    def _grouped(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.p.group, -1, a.shape[-1])

    @staticmethod
    def _head(buf: np.ndarray, shape: tuple) -> np.ndarray:
        """The first cells of a (contiguous) buffer in ``shape``: a short last chunk's share."""
        return buf.reshape(-1)[:math.prod(shape)].reshape(shape)

    def _chunk_views(self, io: StepIO, k: int) -> tuple:
        """For a chunk of k images: the padded bottom (NCHW) and its windows, or None for both
        when the bottom is read in place; the cells of the columns that im2col fills; the
        columns; the GEMM's output (None when image-major: it writes the top)."""
        pad = source = out = None
        if self.use_pad_buf:
            pad = self._nchw(self._head(io.buf["pad"], self._internal((k, self.C, self.Hp, self.Wp))))
            source = self._im2col_source(pad, io.ctx)
        g, hw = self.p.group, self.Ho * self.Wo
        if self._image_major(io.ctx):
            col = self._head(io.buf["col"], (k, g, self._image_rows(), hw))
            cells = col[:, :, :self.ckk].reshape(k, g, self.C // g, self.kh, self.kw, self.Ho, self.Wo)
            if self.p.bias_term:
                col[:, :, self.ckk] = 1  # the bias's row, which im2col leaves alone
        else:
            col = self._head(io.buf["col"], (g, self.ckk, k * hw))
            cells = self._col6(col, k)
            out = self._head(io.buf["out"], (self.p.num_output, k * hw))
        return pad, source, cells, col, out

    def _im2col_source(self, x: np.ndarray, ctx) -> np.ndarray:
        """The windows of NCHW ``x`` in the order of the column cells: (C, kh, kw, n, Ho, Wo), or
        image-major (n, group, C/group, kh, kw, Ho, Wo)."""
        windows = self._windows(x)
        if not self._image_major(ctx):
            return windows
        g = self.p.group
        return windows.transpose(3, 0, 1, 2, 4, 5).reshape(
            x.shape[0], g, self.C // g, self.kh, self.kw, self.Ho, self.Wo)

    def _image_weight(self, io: StepIO) -> np.ndarray:
        """The weight as (group, num_output/group, rows), the bias beside it if there is one."""
        g, k = self.p.group, self.ckk
        if not self.p.bias_term:
            return io.params[0].reshape(g, -1, k)
        w = io.buf["weight_bias"]
        np.copyto(w[:, :, :k], io.params[0].reshape(g, -1, k))
        np.copyto(w[:, :, k], io.params[1].reshape(g, -1))
        return w

    @staticmethod
    def _accumulate(op, first: bool, part: dict, out: np.ndarray, *args, **kwargs) -> None:
        """``out = op(*args)`` for the first chunk, ``out += op(*args)`` for the next ones."""
        if first:
            op(*args, out=out, **kwargs)
            return
        if id(out) not in part:
            part[id(out)] = np.empty_like(out)
        tmp = part[id(out)]
        op(*args, out=tmp, **kwargs)
        out += tmp

    def _col2im(self, col: np.ndarray, dx: np.ndarray, pad) -> None:
        """Sum d(columns) ``col`` of the images of NCHW ``dx`` back into it, through ``pad``,
        the padded (NCHW) copy of those images, when there is one."""
        acc = dx if pad is None else pad
        acc.fill(0)
        dcol = self._col6(col, len(dx))
        for i in range(self.kh):
            for j in range(self.kw):
                cells = self._tap(acc, i, j)
                np.add(cells, dcol[:, i, j].transpose(1, 0, 2, 3), out=cells)
        if pad is not None:
            np.copyto(dx, acc[:, :, self.ph:self.ph + self.H, self.pw:self.pw + self.W])
