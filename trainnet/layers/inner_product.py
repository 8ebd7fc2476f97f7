"""InnerProduct: ``y = x W^T + b`` over the dims from ``axis`` on (weight ``(num_output, K)``)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, ParamBlob, StepIO, register
from trainnet.netcfg.common import FillerParameter, Strict


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

    def flops(self):
        return 2 * self.M * self.K * self.N

    def _weight(self, w: np.ndarray) -> np.ndarray:
        """W^T as a (K, N) view, whichever way it is stored."""
        return w if self.p.transpose else w.T

    def forward_cpu(self, io: StepIO):
        x = io.bottom[0].reshape(self.M, self.K)
        y = io.top[0].reshape(self.M, self.N)
        np.matmul(x, self._weight(io.params[0]), out=y)
        if self.p.bias_term:
            y += io.params[1]

    def backward_cpu(self, io: StepIO):
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
