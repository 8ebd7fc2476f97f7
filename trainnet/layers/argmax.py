"""ArgMax: the indices (and optionally values) of the ``top_k`` largest values (argmax_param).

Without ``axis`` each item of the batch is searched over all its values, and the top is Caffe's
``(N, 1, top_k)`` (``(N, 2, top_k)``, indices then values, with ``out_max_val``), padded with 1s
to the bottom's number of axes.  With ``axis`` the search runs along that axis and the top is
the bottom's shape with that dim replaced by ``top_k``, holding indices, or only the values with
``out_max_val`` (Caffe's rule).  Indices are stored as floats.

Order and ties: Caffe sorts ``(value, index)`` pairs with ``std::greater``, so among equal values
the larger index ranks first; both passes pick the k-th largest pair exactly so.  NaN inputs
have no defined order (nor in Caffe).  There is no backward.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, StepIO, register
from trainnet.layers.no_backward import NoBackward
from trainnet.layers.softmax import split_axis
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class ArgMaxParams(Strict):
    out_max_val: bool = False
    top_k: int = Field(1, ge=1)
    axis: Optional[int] = None


@register("ArgMax")
class ArgMax(NoBackward):
    Params = ArgMaxParams
    caffe_params = {"argmax_param": None}

    def setup(self, bottom_shapes):
        shape, p = bottom_shapes[0], self.p
        if p.axis is not None:
            a, outer, dim, inner = split_axis(self, shape, p.axis)
            top = shape[:a] + (p.top_k,) + shape[a + 1:]
        else:
            if len(shape) < 1:
                raise self.error("expects a bottom with a batch axis, got a scalar")
            outer, dim, inner = shape[0], math.prod(shape[1:]), 1
            top = (shape[0], 2 if p.out_max_val else 1, p.top_k) + (1,) * (len(shape) - 3)
        if p.top_k > dim:
            where = f"along axis {p.axis}" if p.axis is not None else "of each item"
            raise self.error(f"top_k {p.top_k} exceeds the {dim} values {where} in the bottom "
                             f"{shape}")
        self.shape3 = (outer, dim, inner)
        # the top as (outer, slots, top_k, inner): slot 0 indices, slot 1 values (no axis)
        with_index = p.axis is None or not p.out_max_val
        with_value = p.out_max_val
        self.slots = (with_index, with_value)
        self.positions = np.arange(dim).reshape(1, dim, 1)  # each value's index (CPU pass)
        return [top]

    def buffers_gpu(self, ctx):
        return {}  # argmax.cu needs no buffer

    def buffers_cpu(self, ctx):
        outer, dim, inner = self.shape3
        return {"candidate": Buffer((outer, dim, inner), np.bool_),
                "tie": Buffer((outer, dim, inner), np.bool_),
                "best": Buffer((outer, 1, inner)),
                "pick": Buffer((outer, inner), np.int64)}

    def _top4(self, top: np.ndarray) -> np.ndarray:
        outer, _, inner = self.shape3
        return top.reshape(outer, sum(self.slots), self.p.top_k, inner)

    def forward_cpu(self, io: StepIO):
        """k rounds, each taking the largest (value, index) pair among those left."""
        x = io.bottom[0].reshape(self.shape3)
        dim = self.shape3[1]
        left, tie, best, pick = (io.buf[k] for k in ("candidate", "tie", "best", "pick"))
        y = self._top4(io.top[0])
        left.fill(True)
        for k in range(self.p.top_k):
            np.max(x, axis=1, keepdims=True, out=best, where=left, initial=-np.inf)
            np.equal(x, best, out=tie)
            tie &= left
            np.argmax(tie[:, ::-1], axis=1, out=pick)  # the last tie: the largest index
            np.subtract(dim - 1, pick, out=pick)
            slot = 0
            if self.slots[0]:
                np.copyto(y[:, 0, k], pick, casting="unsafe")
                slot = 1
            if self.slots[1]:
                np.copyto(y[:, slot, k], best[:, 0])
            if k + 1 < self.p.top_k:
                np.not_equal(self.positions, pick[:, None, :], out=tie)
                left &= tie

    def forward_gpu(self, io: StepIO):
        outer, dim, inner = self.shape3
        rows = outer * inner
        io.gpu.launch(KERNELS, "argmax_forward", rows, io.top[0], io.bottom[0], np.int64(rows),
                      np.int64(dim), np.int64(inner), np.int64(self.p.top_k),
                      np.int32(self.slots[0]), np.int32(self.slots[1]))
