"""BatchNorm: ``y = (x - mean) / sqrt(var + eps)`` per channel (axis 1), as Caffe's layer.

Its three blobs are running statistics, not learned (Caffe forces their lr_mult to 0):
``mean_sum`` (C,), ``var_sum`` (C,) and ``scale_factor`` (1,), all starting at 0.  With
``use_global_stats`` (the default in TEST) it normalizes by ``mean_sum / s`` and
``var_sum / s`` (s = scale_factor; s = 0 gives 0, as Caffe).  Otherwise it normalizes by the
batch's mean and biased variance over N and the spatial axes, and forward updates the
statistics: ``s = f s + 1``, ``mean_sum = mu + f mean_sum``, ``var_sum = m/(m-1) var +
f var_sum`` (m = N*H*W, Caffe's bias correction).  Backward keeps its own copy of the
normalized ``xhat``, as Caffe does, because the Scale that follows usually overwrites the top.

There is no gamma/beta: a Scale follows.  The compiler may fold that Scale (``folds``; the
step's context then holds it in ``folded``) and an in-place ReLU after it (``fused_relu``) into
this step, which then computes ``y = relu(gamma * xhat + beta)`` in one pass (one kernel on the
GPU) and their backward too; the Scale's blobs follow this layer's three in the step's
``param_blobs``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, Layer, ParamBlob, StepIO, register
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.kernels.sources import BLOCK, kernel_source, partial_blocks

KERNELS = kernel_source(__file__)


class BatchNormParams(Strict):
    use_global_stats: Optional[bool] = None  # not given: the phase is TEST
    moving_average_fraction: float = Field(0.999, ge=0, le=1)
    eps: float = Field(1e-5, ge=0)


@register("BatchNorm")
class BatchNorm(Layer):
    Params = BatchNormParams
    caffe_params = {"batch_norm_param": None}
    in_place_ok = True
    backward_reads_bottom = False  # it reads its own xhat
    can_fuse_relu = True

    def setup(self, bottom_shapes):
        x = bottom_shapes[0]
        if len(x) < 2:
            raise self.error(f"expects a bottom of 2 or more axes (N, C, ...), got {x}")
        self.N, self.C, self.S = x[0], x[1], math.prod(x[2:])
        self.m = self.N * self.S  # values per channel
        self.parts = partial_blocks(self.m, self.C)  # GPU: blocks per channel of a reduction
        self.global_stats = (self.phase == "TEST" if self.p.use_global_stats is None
                             else self.p.use_global_stats)
        return [x]

    def folds(self, layer: Layer) -> bool:
        """Whether ``layer`` (on this layer's top) is a Scale with a learned per-channel gamma
        (and beta) that this layer can apply itself."""
        return (layer.type == "Scale" and len(layer.bottom_shapes) == 1 and layer.learned
                and layer.axis == 1 and layer.shape == (self.C,))

    def param_blobs(self):
        return [ParamBlob(shape, FillerParameter(), learned=False)
                for shape in ((self.C,), (self.C,), (1,))]

    def buffers_gpu(self, ctx):
        channels = (self.C,)
        bufs = {}
        if not self.global_stats:  # the GPU kernels read stored statistics where they are
            bufs = {"mean": Buffer(channels), "inv_std": Buffer(channels)}
        if not self.global_stats or not ctx.forward_only:  # two-stage sums: each block's two
            bufs["partials"] = Buffer((self.C * self.parts * 2,))
        return {**bufs, **self._backward_buffers(ctx)}

    def buffers_cpu(self, ctx):
        channels = (self.C,)
        bufs = {"mean": Buffer(channels), "var": Buffer(channels), "inv_std": Buffer(channels),
                **self._backward_buffers(ctx)}
        if ctx.fused_relu and not ctx.forward_only:
            bufs["positive"] = Buffer(self.top_shapes[0], np.bool_)
        return bufs

    def _backward_buffers(self, ctx) -> dict:
        if ctx.forward_only:
            return {}
        bufs = {"sums": Buffer((2, self.C))}  # backward's sum(dy), sum(dy * xhat)
        if not self.global_stats or ctx.folded:
            bufs["xhat"] = Buffer(self.bottom_shapes[0])
        return bufs

    def flops(self):
        n = math.prod(self.top_shapes[0])
        return n * (2 if self.global_stats else 5)

    @property
    def correction(self) -> np.float32:
        """Caffe's m/(m-1), turning the biased batch variance into the one stored."""
        return np.float32(self.m) / np.float32(self.m - 1) if self.m > 1 else np.float32(1)

    def _gamma_beta(self, io: StepIO):
        """(gamma, dgamma, beta, dbeta) of a folded Scale; None where absent or frozen."""
        if not io.ctx.folded:
            return None, None, None, None
        beta = (io.params[4], io.param_diff[4]) if io.ctx.folded[0].p.bias_term else (None, None)
        return io.params[3], io.param_diff[3], *beta

    def _nchw(self, a):
        """``a`` as (N, C, S): the statistics run over axes 0 and 2."""
        return a.reshape(self.N, self.C, self.S)

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        x, y = self._nchw(io.bottom[0]), self._nchw(io.top[0])
        mean, var, inv_std = io.buf["mean"], io.buf["var"], io.buf["inv_std"]
        mean_sum, var_sum, factor = io.params[:3]
        if self.global_stats and io.ctx.forward_only:
            self._forward_affine_cpu(io, x, y)
            return
        if self.global_stats:
            s = factor[0]
            k = np.float32(0) if s == 0 else np.float32(1) / s
            np.multiply(mean_sum, k, out=mean)
            np.multiply(var_sum, k, out=var)
            np.subtract(x, mean[:, None], out=y)
        else:
            np.mean(x, axis=(0, 2), out=mean)
            np.subtract(x, mean[:, None], out=y)
            np.einsum("ncs,ncs->c", y, y, out=var)
            var /= np.float32(self.m)
            f = np.float32(self.p.moving_average_fraction)
            factor *= f
            factor += np.float32(1)
            mean_sum *= f
            mean_sum += mean
            var_sum *= f
            var_sum += np.multiply(var, self.correction, out=inv_std)
        np.add(var, np.float32(self.p.eps), out=inv_std)
        np.sqrt(inv_std, out=inv_std)
        np.divide(np.float32(1), inv_std, out=inv_std)
        y *= inv_std[:, None]
        if "xhat" in io.buf:
            np.copyto(io.buf["xhat"], io.top[0])
        gamma, _, beta, _ = self._gamma_beta(io)
        if gamma is not None:
            y *= gamma[:, None]
        if beta is not None:
            y += beta[:, None]
        if io.ctx.fused_relu:
            np.maximum(y, 0, out=y)

    def _forward_affine_cpu(self, io: StepIO, x, y) -> None:
        """Inference as one affine pass: ``y = x a + b`` with ``a = gamma / sqrt(var + eps)`` and
        ``b = beta - mean a`` per channel (three passes over the blob instead of five)."""
        a, b = io.buf["inv_std"], io.buf["mean"]
        s = io.params[2][0]
        k = np.float32(0) if s == 0 else np.float32(1) / s
        np.multiply(io.params[1], k, out=a)
        a += np.float32(self.p.eps)
        np.sqrt(a, out=a)
        np.divide(np.float32(1), a, out=a)
        gamma, _, beta, _ = self._gamma_beta(io)
        if gamma is not None:
            a *= gamma
        np.multiply(io.params[0], k, out=b)
        b *= a
        np.negative(b, out=b)
        if beta is not None:
            b += beta
        np.multiply(x, a[:, None], out=y)
        y += b[:, None]
        if io.ctx.fused_relu:
            np.maximum(y, 0, out=y)

    def backward_cpu(self, io: StepIO):
        if io.ctx.fused_relu:
            io.top_diff[0] *= np.greater(io.top[0], 0, out=io.buf["positive"])
        dy, dx = self._nchw(io.top_diff[0]), io.bottom_diff[0]
        gamma, dgamma, _, dbeta = self._gamma_beta(io)
        sum_dy, sum_dy_xhat = io.buf["sums"]
        batch = not self.global_stats
        if dgamma is not None or dbeta is not None or (dx is not None and batch):
            xhat = self._nchw(io.buf["xhat"])
            np.sum(dy, axis=(0, 2), out=sum_dy)
            np.einsum("ncs,ncs->c", dy, xhat, out=sum_dy_xhat)
            if dgamma is not None:
                np.copyto(dgamma, sum_dy_xhat)
            if dbeta is not None:
                np.copyto(dbeta, sum_dy)
        if dx is None:
            return
        dx = self._nchw(dx)  # may be dy itself (in place): dy is read before dx is written
        coef = io.buf["inv_std"]
        if gamma is not None:
            coef = np.multiply(coef, gamma, out=io.buf["mean"])
        if batch:
            # dx = coef (dy - mean(dy) - xhat mean(dy xhat)); xhat serves as scratch
            sum_dy /= np.float32(self.m)
            sum_dy_xhat /= np.float32(self.m)
            xhat *= sum_dy_xhat[:, None]
            np.subtract(dy, sum_dy[:, None], out=dx)
            dx -= xhat
            dx *= coef[:, None]
        else:
            np.multiply(dy, coef[:, None], out=dx)

    # --- GPU -------------------------------------------------------------------------------
    def _stats_gpu(self, io: StepIO) -> tuple:
        """The statistics arguments of the elementwise kernels: the batch's (mean, inv_std
        buffers) or the stored ones (the blobs), which the kernels turn into mean and inv_std
        themselves, so that inference is one kernel."""
        mean_sum = io.params[0]
        mean, inv_std = io.buf.get("mean", mean_sum), io.buf.get("inv_std", mean_sum)
        return (mean, inv_std, *io.params[:3], np.float32(self.p.eps), np.int32(self.global_stats))

    def _sizes(self) -> tuple:
        """GPU: (N, C, S, blocks per channel), the last arguments of the two-stage sums."""
        return np.int64(self.N), np.int64(self.C), np.int64(self.S), np.int64(self.parts)

    def forward_gpu(self, io: StepIO):
        gpu, x, y = io.gpu, io.bottom[0], io.top[0]
        if not self.global_stats:
            partials, sizes = io.buf["partials"], self._sizes()
            gpu.launch_blocks(KERNELS, "batch_norm_stats_partials", partials.size // 2, BLOCK,
                              partials, x, *sizes)
            gpu.launch(KERNELS, "batch_norm_stats", self.C, io.buf["mean"], io.buf["inv_std"],
                       *io.params[:3], partials, np.float32(self.p.eps),
                       np.float32(self.p.moving_average_fraction), self.correction, *sizes)
        gamma, _, beta, _ = self._gamma_beta(io)
        xhat = io.buf.get("xhat")
        # an input or output a flag turns off is given another array and not touched
        gpu.launch(KERNELS, "batch_norm_forward", y.size, y, y if xhat is None else xhat, x,
                   *self._stats_gpu(io), x if gamma is None else gamma, x if beta is None else beta,
                   np.int32(xhat is not None), np.int32(gamma is not None),
                   np.int32(beta is not None), np.int32(io.ctx.fused_relu), np.int64(self.C),
                   np.int64(self.S), np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        gpu, dy, dx, top = io.gpu, io.top_diff[0], io.bottom_diff[0], io.top[0]
        gamma, dgamma, _, dbeta = self._gamma_beta(io)
        sums, xhat = io.buf["sums"], io.buf.get("xhat", dy)
        C, S, relu = np.int64(self.C), np.int64(self.S), np.int32(io.ctx.fused_relu)
        if dgamma is not None or dbeta is not None or (dx is not None and not self.global_stats):
            partials, parts = io.buf["partials"], np.int64(self.parts)
            gpu.launch_blocks(KERNELS, "batch_norm_sums_partials", partials.size // 2, BLOCK,
                              partials, dy, xhat, top, relu, *self._sizes())
            gpu.launch(KERNELS, "batch_norm_backward_sums", self.C, sums,
                       sums if dgamma is None else dgamma, sums if dbeta is None else dbeta,
                       partials, np.int32(dgamma is not None), np.int32(dbeta is not None), C,
                       parts)
        if dx is not None:
            gpu.launch(KERNELS, "batch_norm_backward", dx.size, dx, dy, xhat, top, sums,
                       *self._stats_gpu(io), sums if gamma is None else gamma,
                       np.int32(gamma is not None), relu, np.float32(self.m), C, S,
                       np.int64(dx.size))
