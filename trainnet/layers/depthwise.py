"""Depthwise convolution on the GPU: one filter per channel, computed directly (no columns).

Convolution takes this path on a GPU when ``applies``: group == channels == num_output, as in
MobileNet's depthwise layers, with any kernel size, stride, pad and dilation (3x3 kernels run a
copy of the loops unrolled at compile time).  The general path would fill a column buffer
kh*kw times the size of the top for GEMMs one row high; here forward is one kernel writing
the top with its bias and fused ReLU, and backward is a kernel per gradient (``depthwise.cu``):
the bottom gradient gathered per bottom cell, the weight gradient as one block per (channel,
tap) and the bias gradient as one block per channel, each a deterministic block sum over the
batch and the top's cells.  The path declares no buffer, and its weight gradient reads the
bottom, so a GPU Convolution on it ``reads_bottom``.

The CPU keeps the im2col path (one stacked GEMM for all the groups; backward's outer product
as a broadcast multiply).  On N=8, C=256, 28x28, 3x3, pad 1 (2 CPU cores, medians) it takes
14/29 ms forward/backward at stride 1 and 9/22 ms at stride 2, where a direct NumPy pass (a
multiply-add per kernel tap over strided views, in channel blocks) took 32/45 and 12/19 ms: not
clearly faster, so there is no CPU depthwise path.
"""

from __future__ import annotations

import numpy as np

from trainnet.kernels.sources import BLOCK, kernel_source

KERNELS = kernel_source(__file__)


def applies(channels: int, num_output: int, group: int) -> bool:
    """One input and one output channel per group: each channel has its own filter."""
    return group == channels == num_output


def _geometry(conv, n: int) -> tuple:
    return tuple(np.int32(v) for v in (conv.C, conv.H, conv.W, conv.Ho, conv.Wo, conv.kh, conv.kw,
                                       conv.ph, conv.pw, conv.sh, conv.sw, conv.dh, conv.dw, n))


def forward_gpu(conv, io) -> None:
    """The top of Convolution ``conv`` (bias and fused ReLU included) in one launch."""
    top = io.top[0]
    # params[-1] is the bias, or (unread) the weight when there is none
    io.gpu.launch(KERNELS, "depthwise_forward", top.size, top, io.bottom[0], io.params[0],
                  io.params[-1], np.int32(conv.p.bias_term), np.int32(io.ctx.fused_relu),
                  *_geometry(conv, conv.N))


def backward_gpu(conv, io) -> None:
    """The gradients of Convolution ``conv`` that ``io`` asks for, each in one launch."""
    gpu, dy, geometry = io.gpu, io.top_diff[0], _geometry(conv, conv.N)
    if io.ctx.fused_relu:
        gpu.launch(KERNELS, "depthwise_relu_backward", dy.size, dy, io.top[0], np.int64(dy.size))
    if conv.p.bias_term and io.param_diff[1] is not None:
        gpu.launch_blocks(KERNELS, "depthwise_backward_bias", conv.C, BLOCK, io.param_diff[1], dy,
                          np.int32(conv.C), np.int64(conv.Ho * conv.Wo), np.int32(conv.N))
    if io.param_diff[0] is not None:
        gpu.launch_blocks(KERNELS, "depthwise_backward_weight", io.param_diff[0].size, BLOCK,
                          io.param_diff[0], dy, io.bottom[0], *geometry)
    if io.bottom_diff[0] is not None:
        dx = io.bottom_diff[0]
        gpu.launch(KERNELS, "depthwise_backward_data", dx.size, dx, dy, io.params[0], *geometry)
