"""Depthwise convolution, one filter per channel, computed directly (no columns).

Convolution takes this path when ``applies``: group == channels == num_output, as in
MobileNet's depthwise layers, with any kernel size, stride, pad and dilation.  The general path
would fill a column buffer kh*kw times the size of the top for GEMMs one row high.  On the GPU,
forward is one kernel writing the top with its bias and fused ReLU (3x3 kernels run a copy of
the loops unrolled at compile time), and backward is a kernel per gradient (``depthwise.cu``):
the bottom gradient gathered per bottom cell, the weight gradient as one block per (channel,
tap) and the bias gradient as one block per channel, each a deterministic block sum over the
batch and the top's cells.  There the path declares no buffer, and its weight gradient reads the
bottom, so a GPU Convolution on it ``reads_bottom``.

On the CPU (``forward_cpu``/``backward_cpu``) the path is direct too, in NumPy: forward is a
multiply-add per kernel tap of the channel's weight times a strided view of the zero-padded
bottom, in blocks of images and channels small enough for the L2 cache, shared among the CPU
passes' thread pool (``threads.py``).  Backward pads the bottom again, reduces the top gradient
against the same views per tap for the weight gradient (``einsum`` over n, h, w), then scatters
each tap's share of the bottom gradient into the same padded buffer and crops it.  Its buffers
are per-call scratch: ``pad``, the padded bottom (none without padding: the bottom and its
gradient are used in place), and ``tap``, a block's product per thread; the im2col path's
columns, kh*kw times the top, are gone.  Forward-only, ``pad`` holds a chunk of images within
``forward_only_bytes``.

Forward+backward, 3x3 pad 1, batch 16, on a shared 2-core machine (medians of 11, noisy): 95-98
ms at 32x112x112 where im2col took 190-300 ms (PyTorch 71-85 ms), 142-148 ms at 64x112x112
stride 2 (im2col 188-217), 47-50 ms at 512x14x14 (im2col 59-61), 35-37 ms at 1024x7x7 (im2col
32-35): only the smallest images are no faster, their rows being short for NumPy's loops.
"""

from __future__ import annotations

import numpy as np

from trainnet.kernels.sources import BLOCK, kernel_source
from trainnet.layers import threads
from trainnet.layers.base import Buffer, fill_padded

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


# --- CPU ---------------------------------------------------------------------------------------
BLOCK_CELLS = 1 << 16  # top cells per block of the CPU pass: a block's operands stay in cache


def _tap(conv, a: np.ndarray, i: int, j: int) -> np.ndarray:
    """The (n, c, Ho, Wo) cells of padded NCHW ``a`` that kernel tap (i, j) touches."""
    y, x = i * conv.dh, j * conv.dw
    rows, cols = conv.sh * (conv.Ho - 1) + 1, conv.sw * (conv.Wo - 1) + 1
    return a[:, :, y:y + rows:conv.sh, x:x + cols:conv.sw]


def _taps(conv):
    return [(i, j) for i in range(conv.kh) for j in range(conv.kw)]


def _blocks(conv, n: int) -> list[tuple[slice, slice]]:
    """(images, channels) of ``n`` images in blocks of about BLOCK_CELLS top cells."""
    cells = conv.Ho * conv.Wo
    images, channels = (max(1, min(n, BLOCK_CELLS // (cells * conv.C))), conv.C) \
        if cells * conv.C <= BLOCK_CELLS else (1, max(1, BLOCK_CELLS // cells))
    return [(slice(a, a + images), slice(c, c + channels))
            for a in range(0, n, images) for c in range(0, conv.C, channels)]


def _images(conv, ctx) -> int:
    """Images per forward pass: the batch, or forward-only with padding as many as ``pad`` holds
    within ``forward_only_bytes``, evened out over the fewest chunks."""
    if not (ctx.forward_only and conv.padded):
        return conv.N
    chunks = -(-conv.N // max(1, conv.forward_only_bytes // (conv.C * conv.Hp * conv.Wp * 4)))
    return -(-conv.N // chunks)


def buffers_cpu(conv, ctx) -> dict:
    """Per-call scratch: ``tap``, a block's product of a tap per thread, and with padding
    ``pad``, the padded bottom and then the padded bottom gradient."""
    n = _images(conv, ctx)
    images, channels = _blocks(conv, n)[0]
    cells = len(range(n)[images]) * len(range(conv.C)[channels]) * conv.Ho * conv.Wo
    bufs = {"tap": Buffer((threads.count(), cells), scratch=True)}
    if conv.padded:
        bufs["pad"] = Buffer((n, conv.C, conv.Hp, conv.Wp), scratch=True)
    return bufs


def _scratch(io, k: int, like: np.ndarray) -> np.ndarray:
    return io.buf["tap"][k, :like.size].reshape(like.shape)


def forward_cpu(conv, io) -> None:
    """The top of Convolution ``conv`` (bias and fused ReLU included): a multiply-add per tap."""
    x, w = io.bottom[0], io.params[0][:, 0]
    bias = io.params[1][:, None, None] if conv.p.bias_term else None
    pad = io.buf.get("pad")
    n = conv.N if pad is None else len(pad)
    for start in range(0, conv.N, n):  # one pass unless forward-only
        src, top = x[start:start + n], io.top[0][start:start + n]
        if pad is not None:
            fill_padded(pad[:len(src)], src, conv.ph, conv.pw, 0)
            src = pad[:len(src)]

        def work(blocks, k, src=src, top=top):
            for images, channels in blocks:
                xb, t, wb = src[images, channels], top[images, channels], w[channels]
                product = _scratch(io, k, t)
                for m, (i, j) in enumerate(_taps(conv)):
                    np.multiply(_tap(conv, xb, i, j), wb[:, i, j, None, None],
                                out=product if m else t)
                    if m:
                        np.add(t, product, out=t)
                if bias is not None:
                    np.add(t, bias[channels], out=t)
                if io.ctx.fused_relu:
                    np.maximum(t, 0, out=t)
        threads.each(work, _blocks(conv, len(src)))


def backward_cpu(conv, io) -> None:
    """The gradients of Convolution ``conv`` that ``io`` asks for; reads the bottom."""
    dy, pad, w = io.top_diff[0], io.buf.get("pad"), io.params[0][:, 0]
    dw, dx = io.param_diff[0], io.bottom_diff[0]
    blocks = _blocks(conv, conv.N)
    x = io.bottom[0]
    if pad is not None and dw is not None:
        fill_padded(pad, x, conv.ph, conv.pw, 0)
        x = pad

    def mask(blocks, k):
        for images, channels in blocks:
            d = dy[images, channels]
            np.multiply(d, np.greater(io.top[0][images, channels], 0, out=_scratch(io, k, d)),
                        out=d)

    def weight(channels, k):  # all the images of a few channels at a time: no partial sums
        for c in channels:
            for i, j in _taps(conv):
                np.einsum("nchw,nchw->c", dy[:, c], _tap(conv, x[:, c], i, j), out=dw[c, 0, i, j])

    def bottom(blocks, k):  # into the padded buffer (the padded bottom is no longer needed)
        for images, channels in blocks:
            d, acc = dy[images, channels], (dx if pad is None else pad)[images, channels]
            product = _scratch(io, k, d)
            acc.fill(0)
            for i, j in _taps(conv):
                cells = _tap(conv, acc, i, j)
                np.multiply(d, w[channels, i, j, None, None], out=product)
                np.add(cells, product, out=cells)
            if pad is not None:
                np.copyto(dx[images, channels],
                          acc[:, :, conv.ph:conv.ph + conv.H, conv.pw:conv.pw + conv.W])

    if io.ctx.fused_relu:
        threads.each(mask, blocks)
    if conv.p.bias_term and io.param_diff[1] is not None:
        np.sum(dy, axis=(0, 2, 3), out=io.param_diff[1])
    if dw is not None:
        per = max(1, BLOCK_CELLS // (conv.N * conv.Ho * conv.Wo))
        threads.each(weight, [slice(c, c + per) for c in range(0, conv.C, per)])
    if dx is not None:
        threads.each(bottom, blocks)
