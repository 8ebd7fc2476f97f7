"""Bias: ``y = x + b``, with ``b`` broadcast over the axes of ``x`` it does not cover.

``b`` is a learned blob of shape ``x.shape[axis:axis + num_axes]`` (one bottom) or the second
bottom, which takes a gradient (then its own shape decides what it covers, from ``axis``, as
in Caffe).  The helpers here also serve Scale, which broadcasts the same way.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, ParamBlob, Shape, StepIO, register
from trainnet.netcfg.common import FillerParameter, Strict
from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


def learned_shape(layer: Layer, shape: Shape, axis: int, num_axes: int) -> Shape:
    """Caffe's shape of a learned operand: ``shape[axis:axis + num_axes]`` (-1: to the end)."""
    axis = canonical_axis(layer, shape, axis)
    if num_axes >= 0 and len(shape) < axis + num_axes:
        raise layer.error(f"num_axes {num_axes} from axis {axis} reaches past the {len(shape)}-D "
                          f"bottom {shape}")
    return tuple(shape[axis:] if num_axes == -1 else shape[axis:axis + num_axes])


def canonical_axis(layer: Layer, shape: Shape, axis: int) -> int:
    if not -len(shape) <= axis < len(shape):
        raise layer.error(f"axis {axis} is out of range for a {len(shape)}-D bottom {shape}")
    return axis + len(shape) if axis < 0 else axis


def broadcast_dims(layer: Layer, shape: Shape, axis: int, operand: Shape) -> tuple[int, int, int]:
    """(outer, dim, inner): ``x`` seen as (outer, dim, inner) with the operand along ``dim``.
    A scalar operand applies to everything (axis 0, as Caffe sets it)."""
    axis = 0 if not operand else canonical_axis(layer, shape, axis)
    if tuple(shape[axis:axis + len(operand)]) != tuple(operand):
        raise layer.error(f"operand of shape {operand} does not match bottom {shape} from axis "
                          f"{axis} (it must equal dims {axis}..{axis + len(operand) - 1})")
    return (math.prod(shape[:axis]), math.prod(operand), math.prod(shape[axis + len(operand):]))


def setup_operand(layer: Layer, bottom_shapes: list[Shape], axis: int, num_axes: int) -> None:
    """Bias's and Scale's set-up: ``learned`` (one bottom: the operand is a param blob, else the
    second bottom), the operand's ``shape``, and ``x`` seen as (``outer``, ``dim``, ``inner``)."""
    x = bottom_shapes[0]
    layer.learned = len(bottom_shapes) == 1
    layer.shape = learned_shape(layer, x, axis, num_axes) if layer.learned else bottom_shapes[1]
    layer.outer, layer.dim, layer.inner = broadcast_dims(layer, x, axis, layer.shape)


def operand(layer: Layer, io: StepIO):
    """The operand and where its gradient goes (None: nowhere): a param or the second bottom."""
    if layer.learned:
        return io.params[0], io.param_diff[0]
    return io.bottom[1], io.bottom_diff[1]


class BiasParams(Strict):
    # axis and num_axes place a learned bias (one bottom); with two bottoms the second bottom's
    # shape decides from axis, and num_axes and filler are unused, as in Caffe.
    axis: int = 1
    num_axes: int = Field(1, ge=-1)
    filler: FillerParameter = FillerParameter()


@register("Bias")
class Bias(Layer):
    Params = BiasParams
    caffe_params = {"bias_param": None}
    num_bottoms = (1, 2)
    in_place_ok = True
    backward_reads_bottom = False  # dx = dy, db = sum dy

    def setup(self, bottom_shapes):
        setup_operand(self, bottom_shapes, self.p.axis, self.p.num_axes)
        return [bottom_shapes[0]]

    def param_blobs(self):
        return [ParamBlob(self.shape, self.p.filler)] if self.learned else []

    def flops(self):
        return math.prod(self.top_shapes[0])

    def forward_cpu(self, io: StepIO):
        b, _ = operand(self, io)
        y = io.top[0].reshape(self.outer, self.dim, self.inner)
        np.add(io.bottom[0].reshape(y.shape), b.reshape(self.dim, 1), out=y)

    def backward_cpu(self, io: StepIO):
        _, db = operand(self, io)
        dy = io.top_diff[0].reshape(self.outer, self.dim, self.inner)
        if db is not None:
            np.sum(dy, axis=(0, 2), out=db.reshape(self.dim))
        if io.bottom_diff[0] is not None:
            np.copyto(io.bottom_diff[0], io.top_diff[0])  # the same memory when in place

    def forward_gpu(self, io: StepIO):
        b, _ = operand(self, io)
        y = io.top[0]
        io.gpu.launch(KERNELS, "bias_forward", y.size, y, io.bottom[0], b, np.int64(self.dim),
                      np.int64(self.inner), np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        _, db = operand(self, io)
        dy = io.top_diff[0]
        if db is not None:
            io.gpu.launch_blocks(KERNELS, "bias_backward", self.dim, BLOCK, db, dy,
                                 np.int64(self.outer), np.int64(self.dim), np.int64(self.inner))
        if io.bottom_diff[0] is not None:
            io.gpu.launch(KERNELS, "bias_backward_data", dy.size, io.bottom_diff[0], dy,
                          np.int64(dy.size))
