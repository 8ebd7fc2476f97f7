"""Embed: look up a learned row per index, ``y[..., :] = W[x[...], :] (+ b)`` (embed_param).

The bottom holds indices as floats (truncated toward zero, as Caffe's ``static_cast<int>``);
the top is the bottom's shape plus ``num_output``; the weight is ``(input_dim, num_output)``.
Indices take no gradient.  The weight's gradient adds each top gradient row into the row of
its index, in bottom order.

An index outside ``[0, input_dim)`` is a user error: the CPU pass stops with a message naming
it (Caffe only checks in debug builds).  The GPU pass cannot report without a host sync, so it
clamps such an index into range instead, which keeps memory safe.

The GPU backward is deterministic without atomics: one block per weight row scans the indices
a block-width at a time, skips spans holding none of its row, and adds the matching top
gradient rows in bottom order, the same additions as the CPU's ``np.add.at``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from trainnet.errors import TrainnetError
from trainnet.layers.base import Buffer, Layer, ParamBlob, StepIO, register
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class EmbedParams(Strict):
    num_output: int = Field(ge=1)
    input_dim: int = Field(ge=1)
    bias_term: bool = True
    weight_filler: FillerParameter = FillerParameter()
    bias_filler: FillerParameter = FillerParameter()


@register("Embed")
class Embed(Layer):
    Params = EmbedParams
    caffe_params = {"embed_param": None}
    no_grad_bottoms = (0,)

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        self.M, self.K, self.N = math.prod(shape), self.p.input_dim, self.p.num_output
        return [shape + (self.N,)]

    def param_blobs(self):
        blobs = [ParamBlob((self.K, self.N), self.p.weight_filler)]
        if self.p.bias_term:
            blobs.append(ParamBlob((self.N,), self.p.bias_filler))
        return blobs

    def buffers_gpu(self, ctx):
        return {}

    def buffers_cpu(self, ctx):
        return {"index": Buffer((self.M,), np.int64)}

    def flops(self):
        return self.M * self.N if self.p.bias_term else 0  # the bias adds; lookups are copies

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        x, idx = io.bottom[0].reshape(self.M), io.buf["index"]
        with np.errstate(invalid="ignore"):  # NaN or inf: caught by the range check below
            np.copyto(idx, x, casting="unsafe")  # truncates toward zero
        if self.M and (idx.min() < 0 or idx.max() >= self.K):
            bad = x[(idx < 0) | (idx >= self.K)][0]
            raise TrainnetError(f"layer '{self.name}' (Embed): index {bad:g} is outside "
                                f"[0, {self.K}) (input_dim {self.K})")
        y = io.top[0].reshape(self.M, self.N)
        np.take(io.params[0], idx, axis=0, out=y, mode="clip")  # clip: unbuffered, already checked
        if self.p.bias_term:
            y += io.params[1]

    def backward_cpu(self, io: StepIO):
        dy, idx = io.top_diff[0].reshape(self.M, self.N), io.buf["index"]
        dw = io.param_diff[0]
        if dw is not None:
            dw.fill(0)
            np.add.at(dw, idx, dy)
        if self.p.bias_term and io.param_diff[1] is not None:
            np.sum(dy, axis=0, out=io.param_diff[1])

    # --- GPU -------------------------------------------------------------------------------
    def forward_gpu(self, io: StepIO):
        y = io.top[0]
        # params[-1] is the bias, or (unread) the weight when there is none
        io.gpu.launch(KERNELS, "embed_forward", y.size, y, io.bottom[0], io.params[0],
                      io.params[-1], np.int32(self.p.bias_term), np.int64(self.K),
                      np.int64(self.N), np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        gpu, dy, dw = io.gpu, io.top_diff[0], io.param_diff[0]
        if dw is not None:
            gpu.launch_blocks(KERNELS, "embed_backward", self.K, BLOCK, dw, dy, io.bottom[0],
                              np.int64(self.M), np.int64(self.K), np.int64(self.N))
        if self.p.bias_term and io.param_diff[1] is not None:
            gpu.launch(KERNELS, "embed_bias_backward", self.N, io.param_diff[1], dy,
                       np.int64(self.M), np.int64(self.N))
