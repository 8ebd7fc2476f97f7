"""Tile: repeat the bottom ``tiles`` times along ``axis`` (Caffe's tile_param).

As in Caffe, the whole block from ``axis`` on is repeated: the top is ``(outer, tiles, inner)``
with ``inner`` the bottom's count from ``axis`` on, each tile a copy of the bottom's row.
Backward sums the tiles' gradients.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from trainnet.layers.base import Layer, StepIO, register
from trainnet.layers.softmax import split_axis
from trainnet.netcfg.common import Strict
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)


class TileParams(Strict):
    axis: int = 1
    tiles: int = Field(ge=1)


@register("Tile")
class Tile(Layer):
    Params = TileParams
    caffe_params = {"tile_param": None}
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        shape = bottom_shapes[0]
        a = split_axis(self, shape, self.p.axis)[0]
        self.outer, self.inner = math.prod(shape[:a]), math.prod(shape[a:])
        return [shape[:a] + (shape[a] * self.p.tiles,) + shape[a + 1:]]

    def forward_cpu(self, io: StepIO):
        np.copyto(io.top[0].reshape(self.outer, self.p.tiles, self.inner),
                  io.bottom[0].reshape(self.outer, 1, self.inner))

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is not None:
            np.sum(io.top_diff[0].reshape(self.outer, self.p.tiles, self.inner), axis=1,
                   out=dx.reshape(self.outer, self.inner))

    def forward_gpu(self, io: StepIO):
        y = io.top[0]
        io.gpu.launch(KERNELS, "tile_forward", y.size, y, io.bottom[0], np.int64(self.inner),
                      np.int64(self.p.tiles), np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is not None:
            io.gpu.launch(KERNELS, "tile_backward", dx.size, dx, io.top_diff[0],
                          np.int64(self.inner), np.int64(self.p.tiles), np.int64(dx.size))
