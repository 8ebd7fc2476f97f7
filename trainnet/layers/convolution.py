"""Convolution: Caffe's 2-D convolution as one batched im2col and one stacked GEMM per pass
(``columns.py`` holds the column layout, forward-only chunks and the CPU's im2col/col2im; the
geometry, shared with Deconvolution, is in ``conv_geometry.py``).

The GPU pass uses the same chunks: im2col is one kernel per chunk, then cuBLAS, then one
epilogue kernel for bias, fused ReLU and the transpose into NCHW; image-major, strided batched
GEMMs write the top and the epilogue runs in place.  im2col reads the bottom with its padding
implied, and the bias goes in the epilogue, so a GPU step (``buffers_gpu``) has no ``pad``, no ones
row and no ``weight_bias``.  Backward's col2im is a gather per bottom element.

Every buffer is per-call scratch (``Buffer(scratch=True)``), as Caffe's column buffer: the plan
puts all layers' scratch in one shared workspace, so backward reads the bottom and recomputes
the columns (im2col, then the weight-gradient GEMM), then reuses them for the bottom gradient's
columns before col2im; the CPU does so a chunk of images at a time (``cpu_chunk``).  A 1x1,
stride-1, unpadded convolution (``pointwise``) reads the bottom as its columns: forward and the
bottom gradient are GEMMs per image straight between the NCHW blobs (on the CPU when the images
are not small: batch-first), only the weight gradient builds columns.

Depthwise layers (group == channels == num_output, MobileNet's) take a direct path on the GPU,
chosen at setup (``depthwise``): ``depthwise.py``'s kernels with no column buffer, which read
the bottom in backward.  The CPU takes ``depthwise.py``'s direct NumPy pass too.
"""

from __future__ import annotations

import numpy as np

from trainnet.layers import depthwise
from trainnet.layers.base import Buffer, Layer, ParamBlob, StepIO, fill_padded, register
from trainnet.layers.columns import Columns
from trainnet.layers.conv_geometry import ConvolutionParams, kernel_geometry
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


@register("Convolution")
class Convolution(Columns, Layer):
    Params = ConvolutionParams
    caffe_params = {"convolution_param": None}
    can_fuse_relu = True

    backward_reads_bottom = True  # to recompute the columns (the GPU's depthwise path reads it)

    def setup(self, bottom_shapes):
        kh, kw, ph, pw, sh, sw, dh, dw = kernel_geometry(self, bottom_shapes[0])
        N, C, H, W = bottom_shapes[0]
        g, cout = self.p.group, self.p.num_output
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        Hp, Wp = H + 2 * ph, W + 2 * pw
        if ekh > Hp or ekw > Wp:
            dilated = f" (dilated to {ekh}x{ekw})" if (dh, dw) != (1, 1) else ""
            raise self.error(f"kernel {kh}x{kw}{dilated} is larger than the padded input {Hp}x{Wp}")
        Ho, Wo = (Hp - ekh) // sh + 1, (Wp - ekw) // sw + 1
        self.N, self.C, self.H, self.W, self.Ho, self.Wo = N, C, H, W, Ho, Wo
        self.kh, self.kw, self.ph, self.pw, self.sh, self.sw, self.dh, self.dw = \
            kh, kw, ph, pw, sh, sw, dh, dw
        self.Hp, self.Wp = Hp, Wp
        self.ckk = C // g * kh * kw          # one group's column height
        self.padded = ph > 0 or pw > 0
        # Batch-last internal layout (C, H, W, N): long contiguous rows for im2col/col2im when
        # the images are small; batch-first (C, N, H, W) keeps the top's transposes cheap.
        self.batch_last = Wo < 16
        self.use_pad_buf = self.padded or self.batch_last
        self.depthwise = depthwise.applies(C, cout, g)  # the direct path (depthwise.py)
        self.pointwise = (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0)  # the bottom is the columns
        return [(N, cout, Ho, Wo)]

    def param_blobs(self):
        p = self.p
        blobs = [ParamBlob((p.num_output, self.C // p.group, self.kh, self.kw), p.weight_filler)]
        if p.bias_term:
            blobs.append(ParamBlob((p.num_output,), p.bias_filler))
        return blobs

    def buffers_gpu(self, ctx):
        if self.depthwise or (self.pointwise and ctx.forward_only):
            return {}
        if self.pointwise:  # the weight gradient's columns
            return self._batch_columns(self.N)
        n, g = self.chunk(ctx), self.p.group
        if self._image_major(ctx):  # the bias is added in the epilogue: no ones row
            return {"col": Buffer((n, g, self.ckk, self.Ho * self.Wo), scratch=True)}
        return self._batch_columns(n)  # im2col implies the padding: no pad buffer

    def buffers_cpu(self, ctx):
        if self.depthwise:
            return depthwise.buffers_cpu(self, ctx)
        if self._pointwise_cpu():
            return {} if ctx.forward_only else self._batch_columns(self.N)
        n, g, cout = self.cpu_chunk(ctx), self.p.group, self.p.num_output
        if self._image_major(ctx):
            bufs = {"col": Buffer((n, g, self._image_rows(), self.Ho * self.Wo), scratch=True)}
            if self.p.bias_term:
                bufs["weight_bias"] = Buffer((g, cout // g, self.ckk + 1), scratch=True)
        else:
            bufs = self._batch_columns(n)
        if self.use_pad_buf:
            bufs["pad"] = Buffer(self._internal((n, self.C, self.Hp, self.Wp)), scratch=True)
        return bufs

    def _batch_columns(self, n: int) -> dict:
        m = n * self.Ho * self.Wo
        return {"col": Buffer((self.p.group, self.ckk, m), scratch=True),
                "out": Buffer((self.p.num_output, m), scratch=True)}

    def flops(self):
        outputs = self.N * self.p.num_output * self.Ho * self.Wo
        return 2 * outputs * self.ckk + (outputs if self.p.bias_term else 0)

    def _pointwise_cpu(self) -> bool:
        return self.pointwise and not self.batch_last  # small images: one GEMM beats many

    def _per_image(self, a, rows: int):
        """NCHW ``a`` (a bottom or top, data or diff) as (N, group, rows, H*W)."""
        return a.reshape(a.shape[0], self.p.group, rows, -1)

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        if self.depthwise:
            return depthwise.forward_cpu(self, io)
        if self._pointwise_cpu():
            return self._pointwise_forward_cpu(io)
        n, g, image_major = self.cpu_chunk(io.ctx), self.p.group, self._image_major(io.ctx)
        if image_major:
            w, bias = self._image_weight(io), None
        else:
            w = self._grouped(io.params[0].reshape(self.p.num_output, self.ckk))
            bias = io.params[1].reshape(1, -1, 1, 1) if self.p.bias_term else None
        batch_axis = (slice(None),) * (0 if image_major else 3)
        windows = None if self.use_pad_buf else self._im2col_source(io.bottom[0], io.ctx)
        views = {}  # of the buffers, for a chunk of k images: made once per size, not per chunk
        for start in range(0, self.N, n):  # one pass unless forward-only
            x, top = io.bottom[0][start:start + n], io.top[0][start:start + n]
            k = len(x)
            if k not in views:
                views[k] = self._chunk_views(io, k)
            _, _, _, col, out = views[k]
            self._im2col_cpu(views[k], x, None if windows is None else
                             windows[batch_axis + (slice(start, start + k),)])
            if image_major:
                np.matmul(w, col, out=top.reshape(k, g, -1, self.Ho * self.Wo))
                continue
            np.matmul(w, col, out=self._grouped(out))  # one stacked GEMM for every group
            if bias is not None:
                np.add(self._top_view(out, k), bias, out=top)
            else:
                np.copyto(top, self._top_view(out, k))
        if io.ctx.fused_relu:
            np.maximum(io.top[0], 0, out=io.top[0])

    def _pointwise_forward_cpu(self, io: StepIO):
        g, cout, top = self.p.group, self.p.num_output, io.top[0]
        np.matmul(io.params[0].reshape(g, cout // g, self.ckk), self._per_image(io.bottom[0], self.ckk),
                  out=self._per_image(top, cout // g))
        if self.p.bias_term:
            np.add(top, io.params[1].reshape(1, -1, 1, 1), out=top)
        if io.ctx.fused_relu:
            np.maximum(top, 0, out=top)

    def _im2col_cpu(self, views: tuple, x: np.ndarray, windows) -> None:
        """The columns of images ``x`` into ``views`` (``_chunk_views``), through the padded
        buffer or from ``windows``, the windows of ``x`` read in place."""
        pad, source, cells, _, _ = views
        if pad is not None:
            fill_padded(pad, x, self.ph, self.pw, 0)
        np.copyto(cells, source if pad is not None else windows)

    def backward_cpu(self, io: StepIO):
        if self.depthwise:
            return depthwise.backward_cpu(self, io)
        cout, pointwise = self.p.num_output, self._pointwise_cpu()
        n = self.N if pointwise else self.cpu_chunk(io.ctx)
        dw, dx = io.param_diff[0], io.bottom_diff[0]
        db = io.param_diff[1] if self.p.bias_term else None
        w_g = self._grouped(io.params[0].reshape(cout, self.ckk))
        dw_g = None if dw is None else self._grouped(dw.reshape(cout, self.ckk))
        part = {}  # a later chunk's share of the weight and bias gradients, before it is added
        windows = None if self.use_pad_buf or dw is None else self._im2col_source(io.bottom[0], io.ctx)
        views = {}
        for start in range(0, self.N, n):  # chunks of images: one GEMM of each kind per chunk
            batch = slice(start, start + n)
            x, top_diff = io.bottom[0][batch], io.top_diff[0][batch]
            k, first = len(x), start == 0
            if k not in views:
                views[k] = self._chunk_views(io, k)
            pad, _, _, col, dy = views[k]
            staged = self._top_view(dy, k)
            if io.ctx.fused_relu:  # the staging buffer holds the mask first
                top_diff *= np.greater(io.top[0][batch], 0, out=staged)
            np.copyto(staged, top_diff)
            dy_g = self._grouped(dy)
            if dw is not None:  # the columns are scratch: recompute the forward's
                self._im2col_cpu(views[k], x, None if windows is None else windows[:, :, :, batch])
                self._accumulate(np.matmul, first, part, dw_g, dy_g, col.transpose(0, 2, 1))
            if db is not None:
                self._accumulate(np.sum, first, part, db, dy, axis=1)
            if dx is None or pointwise:
                continue
            # the columns (and the padded copy) are no longer needed: they become d(columns) (and
            # col2im's accumulator).  With one output channel per group (depthwise) the product
            # is an outer product, which a broadcast multiply does several times faster than BLAS.
            outer = np.multiply if w_g.shape[1] == 1 else np.matmul
            outer(w_g.transpose(0, 2, 1), dy_g, out=col)
            self._col2im(col, dx[batch], pad)
        if pointwise and dx is not None:  # dx per image from the (masked) top gradient: no col2im
            np.matmul(w_g.transpose(0, 2, 1), self._per_image(io.top_diff[0], cout // self.p.group),
                      out=self._per_image(dx, self.ckk))

    # --- GPU -------------------------------------------------------------------------------
    def _geometry(self) -> tuple:
        return tuple(np.int32(v) for v in (self.C, self.H, self.W, self.Ho, self.Wo, self.kh,
                                           self.kw, self.ph, self.pw, self.sh, self.sw, self.dh,
                                           self.dw))

    def forward_gpu(self, io: StepIO):
        if self.depthwise:
            return depthwise.forward_gpu(self, io)
        if self.pointwise:  # the bottom is the columns: GEMMs per image into the top
            w, cg = io.params[0].reshape(self.p.group, -1, self.ckk), self.p.num_output // self.p.group
            x, top = self._per_image(io.bottom[0], self.ckk), self._per_image(io.top[0], cg)
            for gi in range(self.p.group):
                io.gpu.gemm_batched(w[gi], x[:, gi], top[:, gi])
            if self.p.bias_term or io.ctx.fused_relu:
                hw = self.Ho * self.Wo
                self._epilogue_gpu(io, io.top[0], io.top[0], hw, self.p.num_output * hw)
            return
        gpu, n, g, hw = io.gpu, self.chunk(io.ctx), self.p.group, self.Ho * self.Wo
        w = io.params[0].reshape(g, -1, self.ckk)
        for start in range(0, self.N, n):  # one pass unless forward-only
            x, top = io.bottom[0][start:start + n], io.top[0][start:start + n]
            k = len(x)
            if self._image_major(io.ctx):  # columns (k, g, ckk, hw); GEMMs straight into the top
                rows = self.ckk  # no ones row: the epilogue adds the bias
                col = self._head(io.buf["col"], (k, g, rows, hw))
                self._im2col_gpu(gpu, col, x, rows, g * rows * hw, hw)
                tops = top.reshape(k, g, -1, hw)
                for gi in range(g):
                    gpu.gemm_batched(w[gi], col[:, gi], tops[:, gi])
                if self.p.bias_term or io.ctx.fused_relu:
                    self._epilogue_gpu(io, top, top, hw, self.p.num_output * hw)
            else:  # columns (g, ckk, k*hw), GEMMs into (num_output, k*hw), then transposed
                col = self._head(io.buf["col"], (g, self.ckk, k * hw))
                out = self._head(io.buf["out"], (g, self.p.num_output // g, k * hw))
                self._im2col_gpu(gpu, col, x, self.ckk, hw, k * hw)
                gpu.gemm_batched(w, col, out)
                self._epilogue_gpu(io, top, out, k * hw, hw)

    def _im2col_gpu(self, gpu, col, x, rows: int, image_stride: int, row_stride: int) -> None:
        k = len(x)
        gpu.launch(KERNELS, "convolution_im2col", self.C * self.kh * self.kw * k * self.Ho * self.Wo,
                   col, x, *self._geometry(), np.int32(k), np.int32(self.C // self.p.group),
                   np.int64(rows), np.int64(image_stride), np.int64(row_stride))

    def _epilogue_gpu(self, io: StepIO, top, src, src_channel: int, src_image: int) -> None:
        # params[-1] is the bias, or (unread) the weight when there is none
        io.gpu.launch(KERNELS, "convolution_forward_epilogue", top.size, top, src, io.params[-1],
                      np.int32(self.p.bias_term), np.int32(io.ctx.fused_relu),
                      np.int32(self.p.num_output), np.int64(self.Ho * self.Wo),
                      np.int64(src_channel), np.int64(src_image), np.int64(top.size))

    def backward_gpu(self, io: StepIO):
        if self.depthwise:
            return depthwise.backward_gpu(self, io)
        gpu, g, cout, hw = io.gpu, self.p.group, self.p.num_output, self.Ho * self.Wo
        m = self.N * hw
        col, dy = io.buf["col"], io.buf["out"].reshape(g, -1, m)
        gpu.launch(KERNELS, "convolution_backward_top", dy.size, dy, io.top_diff[0], io.top[0],
                   np.int32(io.ctx.fused_relu), np.int32(cout), np.int64(hw), np.int64(m),
                   np.int64(dy.size))
        if self.p.bias_term and io.param_diff[1] is not None:
            gpu.launch_blocks(KERNELS, "convolution_bias_backward", cout, BLOCK,
                              io.param_diff[1], dy, np.int64(m))
        if io.param_diff[0] is not None:  # the columns are scratch: recompute the forward's
            self._im2col_gpu(gpu, col, io.bottom[0], self.ckk, hw, m)
            gpu.gemm_batched(dy, col, io.param_diff[0].reshape(g, -1, self.ckk), trans_b=True)
        dx = io.bottom_diff[0]
        if dx is None:
            return
        w = io.params[0].reshape(g, -1, self.ckk)
        if self.pointwise:  # dx per image from the (masked) top gradient: no col2im
            dy_images, dx_images = self._per_image(io.top_diff[0], cout // g), self._per_image(dx, self.ckk)
            for gi in range(g):
                gpu.gemm_batched(w[gi], dy_images[:, gi], dx_images[:, gi], trans_a=True)
            return
        # the columns are no longer needed: they become d(columns)
        gpu.gemm_batched(io.params[0].reshape(g, -1, self.ckk), dy, col, trans_a=True)
        gpu.launch(KERNELS, "convolution_col2im", dx.size, dx, col, *self._geometry(),
                   np.int32(self.N))
