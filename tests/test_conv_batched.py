"""Convolution's CPU training pass in chunks of images (``cpu_chunk``): one im2col and one GEMM
of each kind per chunk, the weight and bias gradients summed over the chunks, give what the
whole batch in one chunk gives; the buffers hold one chunk."""

import numpy as np
import pytest

from layer_check import build, check_gradients, make_io
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU

TRAIN, FUSED = StepContext(), StepContext(fused_relu=True)

CASES = [  # batch-first (Wo >= 16): padded with groups, read in place, dilated and strided
    ((7, 4, 5, 20), {"num_output": 6, "kernel_size": 3, "pad": 1, "group": 2}),
    ((7, 3, 4, 18), {"num_output": 4, "kernel_size": 3, "bias_term": False}),
    ((7, 2, 6, 40), {"num_output": 3, "kernel_size": 2, "dilation": 2, "stride": [1, 2], "pad": 1}),
]


def per_image_bytes(layer):
    return (layer.p.group * layer.ckk + layer.p.num_output) * layer.Ho * layer.Wo * 4


def chunked(params, shape, images_per_chunk):
    layer = build("Convolution", params, [shape])
    layer.cpu_chunk_bytes = per_image_bytes(layer) * images_per_chunk
    return layer


def step(layer, x, dy, ctx, propagate_down=True):
    io = make_io(layer, [x], seed=3, ctx=ctx, propagate_down=[propagate_down])
    layer.forward(io, CPU)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    return io


@pytest.mark.parametrize("shape,params", CASES)
@pytest.mark.parametrize("images_per_chunk,chunk", [(1, 1), (2, 2), (3, 3), (4, 4)])
@pytest.mark.parametrize("ctx", [TRAIN, FUSED])
def test_chunks_match_the_whole_batch(shape, params, images_per_chunk, chunk, ctx):
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape)
    whole = build("Convolution", params, [shape])
    assert not whole.batch_last and whole.cpu_chunk(ctx) == 7
    dy = rng.normal(size=whole.top_shapes[0])
    full = step(whole, x, dy, ctx)
    layer = chunked(params, shape, images_per_chunk)
    assert layer.cpu_chunk(ctx) == chunk
    assert layer.buffers(ctx)["col"].shape[-1] == chunk * layer.Ho * layer.Wo
    io = step(layer, x, dy, ctx)
    for _ in range(2):  # and a second step on the same arrays: nothing left by the first leaks in
        for got, want in [(io.top, full.top), (io.top_diff, full.top_diff),
                          (io.bottom_diff, full.bottom_diff), (io.param_diff, full.param_diff)]:
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        layer.forward(io, CPU)
        io.top_diff[0][...] = dy
        layer.backward(io, CPU)


@pytest.mark.parametrize("shape,params", CASES)
def test_chunks_without_a_bottom_gradient(shape, params):
    rng = np.random.default_rng(8)
    x = rng.normal(size=shape)
    full = step(build("Convolution", params, [shape]), x, rng.normal(size=(7,) + (1,) * 3), TRAIN, False)
    io = step(chunked(params, shape, 3), x, full.top_diff[0], TRAIN, False)
    assert io.bottom_diff[0] is None
    for a, b in zip(io.param_diff, full.param_diff):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,params", CASES)
def test_gradient_check_in_chunks(shape, params):
    layer = chunked(params, (3,) + shape[1:], 2)  # 2 + 1
    assert layer.cpu_chunk(TRAIN) == 2
    check_gradients(layer, [np.random.default_rng(9).normal(size=(3,) + shape[1:])])


def test_batch_last_keeps_the_whole_batch():
    """Small images' columns are batch-last: their rows are the batch, so training does not cut it."""
    layer = chunked({"num_output": 4, "kernel_size": 3}, (7, 3, 6, 5), 1)
    assert layer.batch_last and layer.cpu_chunk(TRAIN) == 7


def test_cifar10_quick_conv2_chunks_within_the_budget():
    layer = build("Convolution", {"num_output": 32, "kernel_size": 5, "pad": 2}, [(100, 32, 16, 16)])
    n = layer.cpu_chunk(TRAIN)
    assert 1 < n < 100 and n * per_image_bytes(layer) <= layer.cpu_chunk_bytes
    assert -(-100 // n) == -(-100 // (layer.cpu_chunk_bytes // per_image_bytes(layer)))
