"""Crop: cut bottom 0 to the shape of bottom 1 on the axes from ``axis`` on (Caffe's crop_param).

``offset`` gives where the crop starts: one value for every cropped axis, or one per cropped
axis, or none (0).  Bottom 1 only lends its shape and takes no gradient; backward writes bottom
0's gradient inside the crop and zeros outside it.

On the GPU the crop is one gather kernel over the top.  Neighbouring axes merge first where the
inner one is not cropped, and the kernel handles up to ``MAX_AXES`` merged axes, which covers
every crop of a blob of up to 6 axes.
"""

from __future__ import annotations

import math

import numpy as np

from trainnet.layers.base import Layer, StepIO, register
from trainnet.layers.softmax import split_axis
from trainnet.netcfg.common import Strict, UIntList
from trainnet.kernels.sources import kernel_source

KERNELS = kernel_source(__file__)
MAX_AXES = 6  # merged axes the crop kernels index (crop.cu)


class CropParams(Strict):
    axis: int = 2
    offset: UIntList = []


def merge_axes(top: tuple[int, ...], bottom: tuple[int, ...], offsets: list[int]):
    """(top dims, bottom dims, offsets) with each axis that is not cropped folded into the one
    before it: the same copy with fewer axes to index."""
    merged = [[top[0], bottom[0], offsets[0]]]
    for t, b, o in zip(top[1:], bottom[1:], offsets[1:]):
        if t == b:  # uncropped (hence offset 0): rows of the outer axis get longer
            merged[-1] = [merged[-1][0] * b, merged[-1][1] * b, merged[-1][2] * b]
        else:
            merged.append([t, b, o])
    return merged


@register("Crop")
class Crop(Layer):
    Params = CropParams
    caffe_params = {"crop_param": None}
    num_bottoms = (2, 2)
    no_grad_bottoms = (1,)
    backward_reads_bottom = False

    def setup(self, bottom_shapes):
        shape, ref = bottom_shapes
        n = len(shape)
        a = split_axis(self, shape, self.p.axis)[0]
        if len(ref) < n:
            raise self.error(f"bottom 1 {ref} has fewer axes than bottom 0 {shape}")
        given = list(self.p.offset)
        if len(given) > 1 and len(given) != n - a:
            raise self.error(f"offset: {len(given)} values for the {n - a} cropped axes "
                             f"{a}..{n - 1}; give one value, or one per cropped axis")
        offsets = [0] * a + ([given[0]] * (n - a) if len(given) == 1 else given or [0] * (n - a))
        top = shape[:a] + tuple(ref[a:n])
        for i in range(a, n):
            if offsets[i] + top[i] > shape[i]:
                raise self.error(f"the crop of axis {i} (size {top[i]} at offset {offsets[i]}) "
                                 f"goes past bottom 0's size {shape[i]} (bottoms {shape} and "
                                 f"{ref})")
        self.window = tuple(slice(o, o + t) for o, t in zip(offsets, top))
        merged = merge_axes(top, shape, offsets)
        if len(merged) > MAX_AXES:
            raise self.error(f"crops {len(merged)} separate axes; at most {MAX_AXES} are supported")
        merged = [[1, 1, 0]] * (MAX_AXES - len(merged)) + merged
        strides = [math.prod(b for _, b, _ in merged[i + 1:]) for i in range(MAX_AXES)]
        self.kernel_args = tuple(np.int64(t) for t, _, _ in merged[1:]) + \
            tuple(np.int64(s) for s in strides) + \
            (np.int64(sum(o * s for (_, _, o), s in zip(merged, strides))),)
        return [top]

    def forward_cpu(self, io: StepIO):
        np.copyto(io.top[0], io.bottom[0][self.window])

    def backward_cpu(self, io: StepIO):
        dx = io.bottom_diff[0]
        if dx is not None:
            dx[...] = 0
            np.copyto(dx[self.window], io.top_diff[0])

    def forward_gpu(self, io: StepIO):
        y = io.top[0]
        io.gpu.launch(KERNELS, "crop_forward", y.size, y, io.bottom[0], *self.kernel_args,
                      np.int64(y.size))

    def backward_gpu(self, io: StepIO):
        dx, dy = io.bottom_diff[0], io.top_diff[0]
        if dx is not None:
            io.gpu.fill(dx, 0.0)
            io.gpu.launch(KERNELS, "crop_backward", dy.size, dx, dy, *self.kernel_args,
                          np.int64(dy.size))
