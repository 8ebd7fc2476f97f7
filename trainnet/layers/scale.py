"""Scale: ``y = x * s (+ b)``, with ``s`` (and ``b``) broadcast as in Bias.

``s`` is a learned blob of shape ``x.shape[axis:axis + num_axes]`` (one bottom; filled with 1
unless a filler is given) or the second bottom, which then takes a gradient; ``bias_term``
adds a learned bias of the same shape.  After a BatchNorm it is the learned gamma and beta,
and the compiler may fold it into that BatchNorm (plan/fuse.py).

Backward needs ``x`` for the gradient of ``s``.  Configured in place (``top: x`` on
``bottom: x``, as Caffe's ResNets are written), the layer keeps a copy of ``x`` from forward,
as Caffe does.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from trainnet.layers.base import Buffer, Layer, ParamBlob, StepIO, register, save_bottom
from trainnet.layers.bias import operand, setup_operand
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


class ScaleParams(Strict):
    # axis and num_axes place a learned scale (one bottom); with two bottoms the second bottom's
    # shape decides from axis, and num_axes and filler are unused, as in Caffe.
    axis: int = 1
    num_axes: int = Field(1, ge=-1)
    filler: FillerParameter = FillerParameter(value=1.0)  # Caffe: 1 (identity) when not given
    bias_term: bool = False
    bias_filler: FillerParameter = FillerParameter()


@register("Scale")
class Scale(Layer):
    Params = ScaleParams
    caffe_params = {"scale_param": None}
    num_bottoms = (1, 2)
    in_place_ok = True
    backward_reads_bottom = True  # ds = sum dy * x

    def setup(self, bottom_shapes):
        x = bottom_shapes[0]
        setup_operand(self, bottom_shapes, self.p.axis, self.p.num_axes)
        # the canonical axis the scale starts at (Caffe's axis_: 0 for a scalar)
        self.axis = 0 if not self.shape else self.p.axis % len(x)
        return [x]

    def param_blobs(self):
        blobs = [ParamBlob(self.shape, self.p.filler)] if self.learned else []
        if self.p.bias_term:
            blobs.append(ParamBlob(self.shape, self.p.bias_filler))
        return blobs

    def buffers_cpu(self, ctx):  # in place, forward keeps a copy of ``x`` for backward
        if ctx.in_place and not ctx.forward_only:
            return {"bottom": Buffer(self.bottom_shapes[0])}
        return {}

    def flops(self):
        return math.prod(self.top_shapes[0]) * (2 if self.p.bias_term else 1)

    def _io(self, io: StepIO):
        """(scale, its gradient or None, bias or None, its gradient or None, the x backward reads)."""
        s, ds = operand(self, io)
        b, db = (io.params[-1], io.param_diff[-1]) if self.p.bias_term else (None, None)
        x = io.buf.get("bottom", io.bottom[0])
        return s, ds, b, db, x

    def _keeps_copy(self, io: StepIO) -> bool:
        """In place, and backward will want ``x``: copy it before forward overwrites it."""
        return "bottom" in io.buf and self._io(io)[1] is not None

    def forward(self, io: StepIO, device) -> None:
        if self._keeps_copy(io):
            save_bottom(io, device)
        super().forward(io, device)

    # --- CPU -------------------------------------------------------------------------------
    def forward_cpu(self, io: StepIO):
        s, _, b, _, _ = self._io(io)
        y = io.top[0].reshape(self.outer, self.dim, self.inner)
        np.multiply(io.bottom[0].reshape(y.shape), s.reshape(self.dim, 1), out=y)
        if b is not None:
            y += b.reshape(self.dim, 1)

    def backward_cpu(self, io: StepIO):
        s, ds, _, db, x = self._io(io)
        dy = io.top_diff[0].reshape(self.outer, self.dim, self.inner)
        if db is not None:
            np.sum(dy, axis=(0, 2), out=db.reshape(self.dim))
        if ds is not None:
            np.einsum("odi,odi->d", dy, x.reshape(dy.shape), out=ds.reshape(self.dim))
        dx = io.bottom_diff[0]
        if dx is not None:  # last: dx may be dy itself (in place)
            np.multiply(dy, s.reshape(self.dim, 1), out=dx.reshape(dy.shape))

    # --- GPU -------------------------------------------------------------------------------
    def forward_gpu(self, io: StepIO):
        s, _, b, _, _ = self._io(io)
        x, y = io.bottom[0], io.top[0]
        io.gpu.launch(KERNELS, "scale_forward", y.size, y, x, s, s if b is None else b,
                      np.int32(b is not None), np.int64(self.dim), np.int64(self.inner),
                      np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        s, ds, _, db, x = self._io(io)
        dy = io.top_diff[0]
        if ds is not None or db is not None:
            # an output not wanted is given another array and not written
            io.gpu.launch_blocks(KERNELS, "scale_backward_params", self.dim, BLOCK,
                                 ds if ds is not None else db, db if db is not None else ds, dy, x,
                                 np.int32(ds is not None), np.int32(db is not None),
                                 np.int64(self.outer), np.int64(self.dim), np.int64(self.inner))
        dx = io.bottom_diff[0]
        if dx is not None:
            io.gpu.launch(KERNELS, "scale_backward_data", dy.size, dx, dy, s, np.int64(self.dim),
                          np.int64(self.inner), np.int64(dy.size))
