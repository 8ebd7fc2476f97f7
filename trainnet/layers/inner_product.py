"""InnerProduct: ``y = x W^T + b`` over the dims from ``axis`` on (weight ``(num_output, K)``).

On the GPU the products are cuBLAS GEMMs and the bias (with a fused ReLU) is one epilogue kernel.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, Layer, ParamBlob, StepIO, register
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class InnerProductParams(Strict):
    num_output: int = Field(ge=1)
    bias_term: bool = True
    weight_filler: FillerParameter = FillerParameter()
    bias_filler: FillerParameter = FillerParameter()
    axis: int = 1
    transpose: bool = False  # weight stored as (K, num_output)


@register("InnerProduct")
class InnerProduct(Layer):
    Params = InnerProductParams
    caffe_params = {"inner_product_param": None}
    can_fuse_relu = True

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        axis = self.p.axis + len(shape) if self.p.axis < 0 else self.p.axis
        if not 0 <= axis < len(shape):
            raise self.error(f"axis {self.p.axis} is out of range for a {len(shape)}-D bottom {shape}")
        self.M = math.prod(shape[:axis])
        self.K = math.prod(shape[axis:])
        self.N = self.p.num_output
        return [tuple(shape[:axis]) + (self.N,)]

    def param_blobs(self):
        w = (self.K, self.N) if self.p.transpose else (self.N, self.K)
        blobs = [ParamBlob(w, self.p.weight_filler)]
        if self.p.bias_term:
            blobs.append(ParamBlob((self.N,), self.p.bias_filler))
        return blobs

    def buffers_gpu(self, ctx):
        return {}

    def buffers_cpu(self, ctx):
        if ctx.fused_relu and not ctx.forward_only:
            return {"positive": Buffer(self.top_shapes[0], np.bool_)}  # the ReLU's mask
        return {}

    def flops(self):
        return 2 * self.M * self.K * self.N

    def _weight(self, w: np.ndarray) -> np.ndarray:
        """W^T as a (K, N) view, whichever way it is stored."""
        return w if self.p.transpose else w.T

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        x = io.bottom[0].reshape(self.M, self.K)
        y = io.top[0].reshape(self.M, self.N)
        np.matmul(x, self._weight(io.params[0]), out=y)
        if self.p.bias_term:
            y += io.params[1]
        if io.ctx.fused_relu:
            np.maximum(y, 0, out=y)

    def backward_cpu(self, io: StepIO):
        if io.ctx.fused_relu:
            io.top_diff[0] *= np.greater(io.top[0], 0, out=io.buf["positive"])
        dy = io.top_diff[0].reshape(self.M, self.N)
        dw = io.param_diff[0]
        if dw is not None:
            x = io.bottom[0].reshape(self.M, self.K)
            if self.p.transpose:
                np.matmul(x.T, dy, out=dw)
            else:
                np.matmul(dy.T, x, out=dw)
        if self.p.bias_term and io.param_diff[1] is not None:
            np.sum(dy, axis=0, out=io.param_diff[1])
        dx: Optional[np.ndarray] = io.bottom_diff[0]
        if dx is not None:
            np.matmul(dy, self._weight(io.params[0]).T, out=dx.reshape(self.M, self.K))

    # --- GPU -------------------------------------------------------------------------------
    def forward_gpu(self, io: StepIO):
        y = io.top[0].reshape(self.M, self.N)
        io.gpu.gemm(io.bottom[0].reshape(self.M, self.K), io.params[0], y,
                    trans_b=not self.p.transpose)
        if self.p.bias_term or io.ctx.fused_relu:
            # params[-1] is the bias, or (unread) the weight when there is none
            io.gpu.launch(KERNELS, "inner_product_forward_epilogue", y.size, y, io.params[-1],
                          np.int32(self.p.bias_term), np.int32(io.ctx.fused_relu),
                          np.int64(self.N), np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        gpu, dy = io.gpu, io.top_diff[0].reshape(self.M, self.N)
        if io.ctx.fused_relu:
            gpu.launch(KERNELS, "inner_product_relu_backward", dy.size, dy, io.top[0],
                       np.int64(dy.size))
        dw = io.param_diff[0]
        if dw is not None:
            x = io.bottom[0].reshape(self.M, self.K)
            if self.p.transpose:
                gpu.gemm(x, dy, dw, trans_a=True)
            else:
                gpu.gemm(dy, x, dw, trans_a=True)
        if self.p.bias_term and io.param_diff[1] is not None:
            gpu.launch_blocks(KERNELS, "inner_product_bias_backward", self.N, BLOCK,
                              io.param_diff[1], dy, np.int64(self.M), np.int64(self.N))
        dx = io.bottom_diff[0]
        if dx is not None:
            gpu.gemm(dy, io.params[0], dx.reshape(self.M, self.K), trans_b=self.p.transpose)
