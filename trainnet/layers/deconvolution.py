"""Deconvolution: Caffe's transposed convolution, the backward-data pass of a Convolution.

The top is ``s(H-1) + d(k-1) + 1 - 2p`` per spatial axis and the weight ``(C, num_output/group,
kh, kw)``: the weight of the Convolution that maps a top-shaped blob back to the bottom's shape
(Caffe's ``reverse_dimensions``).  Its parameters are Convolution's (``convolution_param``).

Forward copies the bottom channel-major into ``bottom_t`` ``(C, N*H*W)``, multiplies it by every
group's transposed weight in one stacked GEMM into columns ``(group, num_output/group*kh*kw,
N*H*W)`` and col2im scatters those into the top over the bias: one strided add per kernel tap,
each clipped to the top, so the padding needs no buffer.  Backward is a Convolution's forward of
the top gradient: its im2col (the same clipped taps) into the columns; the weight gradient is
``bottom_t`` times the columns, the bottom gradient the weight times the columns, transposed
back into NCHW.  Both buffers are per-call scratch in the workspace every layer shares (as
Caffe's), so backward copies the bottom into ``bottom_t`` again for the weight gradient.  With one bottom channel per group (FCN's bilinear upsampling) the forward GEMM is an outer
product, done as a broadcast multiply.

The GPU pass (``deconvolution.cu``) keeps the buffers and the GEMMs (cuBLAS); the transposes,
col2im (a gather per top cell, bias added there) and im2col are kernels, col2im and im2col shared
with Convolution (``im2col.cuh``).
"""

from __future__ import annotations

import numpy as np

from trainnet.layers.base import Buffer, Layer, ParamBlob, StepIO, register
from trainnet.layers.conv_geometry import ConvolutionParams, kernel_geometry
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


def clipped_taps(size: int, out: int, kernel: int, pad: int, stride: int,
                 dilation: int) -> list[tuple[int, slice, slice]]:
    """Along one axis, for each tap t: the bottom cells y whose top cell ``stride*y - pad +
    t*dilation`` lies in ``[0, out)``, as (t, their bottom slice, their top slice).  A tap that
    reaches no top cell is left out."""
    taps = []
    for t in range(kernel):
        offset = t * dilation - pad  # the top cell of bottom cell 0
        first, last = max(0, -(offset // stride)), min(size - 1, (out - 1 - offset) // stride)
        if first <= last:
            start, stop = first * stride + offset, last * stride + offset + 1
            taps.append((t, slice(first, last + 1), slice(start, stop, stride)))
    return taps


@register("Deconvolution")
class Deconvolution(Layer):
    Params = ConvolutionParams
    caffe_params = {"convolution_param": None}
    backward_reads_bottom = True  # bottom_t is scratch: backward copies the bottom again

    def setup(self, bottom_shapes):
        kh, kw, ph, pw, sh, sw, dh, dw = kernel_geometry(self, bottom_shapes[0])
        N, C, H, W = bottom_shapes[0]
        Ho = sh * (H - 1) + dh * (kh - 1) + 1 - 2 * ph
        Wo = sw * (W - 1) + dw * (kw - 1) + 1 - 2 * pw
        if Ho < 1 or Wo < 1:
            raise self.error(f"the top would be {Ho}x{Wo}: pad {ph}x{pw} is too large for a "
                             f"{H}x{W} bottom, kernel {kh}x{kw}, stride {sh}x{sw} and dilation "
                             f"{dh}x{dw}")
        self.N, self.C, self.H, self.W, self.Ho, self.Wo = N, C, H, W, Ho, Wo
        self.kh, self.kw, self.ph, self.pw, self.sh, self.sw, self.dh, self.dw = \
            kh, kw, ph, pw, sh, sw, dh, dw
        self.ckk = self.p.num_output // self.p.group * kh * kw  # one group's column height
        rows, cols = clipped_taps(H, Ho, kh, ph, sh, dh), clipped_taps(W, Wo, kw, pw, sw, dw)
        self.taps = [(i, j, (slice(None), slice(None), bi, bj), (slice(None), slice(None), ti, tj))
                     for i, bi, ti in rows for j, bj, tj in cols]
        # im2col must zero the column cells that taps clipped at the border leave unwritten
        self.clipped = ([b for _, b, _ in rows] != [slice(0, H)] * kh
                        or [b for _, b, _ in cols] != [slice(0, W)] * kw)
        return [(N, self.p.num_output, Ho, Wo)]

    def param_blobs(self):
        p = self.p
        blobs = [ParamBlob((self.C, p.num_output // p.group, self.kh, self.kw), p.weight_filler)]
        if p.bias_term:
            blobs.append(ParamBlob((p.num_output,), p.bias_filler))
        return blobs

    def buffers_cpu(self, ctx):
        m = self.N * self.H * self.W
        return {"bottom_t": Buffer((self.C, m), scratch=True),
                "col": Buffer((self.p.group, self.ckk, m), scratch=True)}

    def flops(self):
        p = self.p
        macs = self.N * self.H * self.W * self.C * p.num_output // p.group * self.kh * self.kw
        return 2 * macs + (self.N * p.num_output * self.Ho * self.Wo if p.bias_term else 0)

    # --- views --------------------------------------------------------------------------------
    def _grouped(self, a: np.ndarray) -> np.ndarray:
        """A (rows, N*H*W) buffer as (group, rows/group, N*H*W)."""
        return a.reshape(self.p.group, -1, a.shape[-1])

    def _grouped_weight(self, w: np.ndarray) -> np.ndarray:
        """The weight (or its gradient) as (group, C/group, num_output/group*kh*kw)."""
        return w.reshape(self.p.group, -1, self.ckk)

    def _bottom_nchw(self, bottom_t: np.ndarray) -> np.ndarray:
        """``bottom_t`` (C, N*H*W) viewed as (N, C, H, W)."""
        return bottom_t.reshape(self.C, self.N, self.H, self.W).transpose(1, 0, 2, 3)

    def _tap_columns(self, col: np.ndarray) -> np.ndarray:
        """The columns viewed as (kh, kw, N, num_output, H, W): one NCHW-ordered block per tap."""
        return col.reshape(self.p.num_output, self.kh, self.kw, self.N, self.H, self.W) \
                  .transpose(1, 2, 3, 0, 4, 5)

    # --- CPU ----------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        bottom_t, col, top = io.buf["bottom_t"], io.buf["col"], io.top[0]
        np.copyto(self._bottom_nchw(bottom_t), io.bottom[0])
        w_t = self._grouped_weight(io.params[0]).transpose(0, 2, 1)  # (group, ckk, C/group)
        outer = np.multiply if w_t.shape[2] == 1 else np.matmul
        outer(w_t, self._grouped(bottom_t), out=col)
        if self.p.bias_term:
            np.copyto(top, io.params[1].reshape(1, -1, 1, 1))
        else:
            top.fill(0)
        taps = self._tap_columns(col)
        for i, j, bottom_cells, top_cells in self.taps:  # col2im
            cells = top[top_cells]
            np.add(cells, taps[i, j][bottom_cells], out=cells)

    def backward_cpu(self, io: StepIO):
        dy, col = io.top_diff[0], io.buf["col"]
        if self.p.bias_term and io.param_diff[1] is not None:
            np.sum(dy, axis=(0, 2, 3), out=io.param_diff[1])
        dw, dx = io.param_diff[0], io.bottom_diff[0]
        if dw is None and dx is None:
            return
        if self.clipped:
            col.fill(0)
        taps = self._tap_columns(col)
        for i, j, bottom_cells, top_cells in self.taps:  # im2col of the top gradient
            np.copyto(taps[i, j][bottom_cells], dy[top_cells])
        bottom_t = self._grouped(io.buf["bottom_t"])
        if dw is not None:
            np.copyto(self._bottom_nchw(io.buf["bottom_t"]), io.bottom[0])
            np.matmul(bottom_t, col.transpose(0, 2, 1), out=self._grouped_weight(dw))
        if dx is not None:  # bottom_t is no longer needed: it takes the bottom gradient
            np.matmul(self._grouped_weight(io.params[0]), col, out=bottom_t)
            np.copyto(dx, self._bottom_nchw(io.buf["bottom_t"]))

    # --- GPU ----------------------------------------------------------------------------------
    def _geometry(self) -> tuple:
        """The geometry of the Convolution from the top's shape to the bottom's (im2col.cuh)."""
        return tuple(np.int32(v) for v in (self.p.num_output, self.Ho, self.Wo, self.H, self.W,
                                           self.kh, self.kw, self.ph, self.pw, self.sh, self.sw,
                                           self.dh, self.dw))

    def _transpose_gpu(self, gpu, name: str, dst, src) -> None:
        gpu.launch(KERNELS, name, dst.size, dst, src, np.int32(self.C), np.int64(self.H * self.W),
                   np.int64(dst.size))

    def forward_gpu(self, io: StepIO):
        gpu, bottom_t, col, top = io.gpu, io.buf["bottom_t"], io.buf["col"], io.top[0]
        self._transpose_gpu(gpu, "deconvolution_bottom_t", bottom_t, io.bottom[0])
        w = self._grouped_weight(io.params[0])
        gpu.gemm_batched(w, self._grouped(bottom_t), col, trans_a=True)
        # params[-1] is the bias, or (unread) the weight when there is none
        gpu.launch(KERNELS, "deconvolution_forward", top.size, top, col, io.params[-1],
                   np.int32(self.p.bias_term), *self._geometry(), np.int32(self.N))

    def backward_gpu(self, io: StepIO):
        gpu, dy, col, cout = io.gpu, io.top_diff[0], io.buf["col"], self.p.num_output
        if self.p.bias_term and io.param_diff[1] is not None:
            gpu.launch_blocks(KERNELS, "deconvolution_bias_backward", cout, BLOCK, io.param_diff[1],
                              dy, np.int32(cout), np.int64(self.Ho * self.Wo), np.int32(self.N))
        dw, dx = io.param_diff[0], io.bottom_diff[0]
        if dw is None and dx is None:
            return
        m, bottom_t = col.shape[2], self._grouped(io.buf["bottom_t"])
        gpu.launch(KERNELS, "deconvolution_im2col", col.size, col, dy, *self._geometry(),
                   np.int32(self.N), np.int32(cout // self.p.group), np.int64(self.ckk),
                   np.int64(self.H * self.W), np.int64(m))
        if dw is not None:
            self._transpose_gpu(gpu, "deconvolution_bottom_t", io.buf["bottom_t"], io.bottom[0])
            gpu.gemm_batched(bottom_t, col, self._grouped_weight(dw), trans_b=True)
        if dx is not None:  # bottom_t is no longer needed: it takes the bottom gradient
            gpu.gemm_batched(self._grouped_weight(io.params[0]), col, bottom_t)
            self._transpose_gpu(gpu, "deconvolution_bottom_diff", dx, io.buf["bottom_t"])
