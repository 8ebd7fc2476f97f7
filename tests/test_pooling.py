"""Pooling against a naive transcription of Caffe's pooling_layer.cpp loops, plus the gradient
checker, the config errors, and CPU/GPU parity (ties, padding, forward-only, a replayed graph)."""

import math

import numpy as np
import pytest

from gpu_check import check_parity
from layer_cases import Case, check_graph_replay, layer_tests, normal
from layer_check import build, check_gradients, run_forward
from trainnet.errors import ConfigError
from trainnet.layers import pooling, threads
from trainnet.layers.base import StepContext
from trainnet.runtime.device import CPU

FLT_MAX = float(np.finfo(np.float32).max)


def pair(params, name, default):
    if params.get("global_pooling") and name != "kernel":
        return default, default
    if f"{name}_h" in params:
        return params[f"{name}_h"], params[f"{name}_w"]
    v = params.get(name + ("_size" if name == "kernel" else ""), default)
    return v, v


def ref_pool(x, dy, params):
    """Caffe's Forward_cpu/Backward_cpu for MAX and AVE, loop by loop."""
    N, C, H, W = x.shape
    if params.get("global_pooling"):
        kh, kw = H, W
    else:
        kh, kw = pair(params, "kernel", None)
    (ph, pw), (sh, sw) = pair(params, "pad", 0), pair(params, "stride", 1)
    rnd = math.floor if params.get("round_mode") == "FLOOR" else math.ceil
    Ho = int(rnd(float(H + 2 * ph - kh) / sh)) + 1
    Wo = int(rnd(float(W + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        if (Ho - 1) * sh >= H + ph:
            Ho -= 1
        if (Wo - 1) * sw >= W + pw:
            Wo -= 1
    top, dx = np.zeros((N, C, Ho, Wo)), np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    hstart, wstart = oh * sh - ph, ow * sw - pw
                    if params.get("pool", "MAX") == "MAX":
                        hend, wend = min(hstart + kh, H), min(wstart + kw, W)
                        hstart, wstart = max(hstart, 0), max(wstart, 0)
                        best, where = -FLT_MAX, None
                        for h in range(hstart, hend):
                            for w in range(wstart, wend):
                                if x[n, c, h, w] > best:
                                    best, where = x[n, c, h, w], (h, w)
                        top[n, c, oh, ow] = best
                        if where is not None:
                            dx[n, c, where[0], where[1]] += dy[n, c, oh, ow]
                    else:
                        hend, wend = min(hstart + kh, H + ph), min(wstart + kw, W + pw)
                        size = (hend - hstart) * (wend - wstart)
                        hstart, wstart = max(hstart, 0), max(wstart, 0)
                        hend, wend = min(hend, H), min(wend, W)
                        top[n, c, oh, ow] = x[n, c, hstart:hend, wstart:wend].sum() / size
                        dx[n, c, hstart:hend, wstart:wend] += dy[n, c, oh, ow] / size
    return top, dx


WINDOWS = [  # params without pool, each tested with MAX and AVE
    {"kernel_size": 2, "stride": 2},
    {"kernel_size": 3, "stride": 2},                       # AlexNet's overlapping windows
    {"kernel_size": 3, "stride": 2, "round_mode": "FLOOR"},
    {"kernel_size": 3, "stride": 3},                       # ceil: a last window past the edge
    {"kernel_size": 3, "stride": 2, "pad": 1},
    {"kernel_size": 2, "stride": 2, "pad": 1},             # 5x5: the last window is dropped
    {"kernel_size": 2, "stride": 2, "pad": 1, "round_mode": "FLOOR"},
    {"kernel_h": 2, "kernel_w": 3, "stride_h": 1, "stride_w": 2, "pad_h": 1, "pad_w": 0},
    {"kernel_h": 3, "kernel_w": 2, "stride_h": 3, "stride_w": 1, "pad_h": 0, "pad_w": 1},
    {"kernel_h": 1, "kernel_w": 2, "stride_h": 3, "stride_w": 2, "pad_h": 0, "pad_w": 1},  # drop, pad_h 0
    {"kernel_size": 1, "stride": 1},
    {"global_pooling": True},
]
SHAPES = [(2, 3, 5, 5), (1, 2, 8, 7)]
CASES = [(shape, dict(w, pool=pool)) for w in WINDOWS for pool in ("MAX", "AVE") for shape in SHAPES]


def check_case(shape, params, x):
    rng = np.random.default_rng(1)
    layer = build("Pooling", params, [shape])
    io = run_forward(layer, [x.copy()])
    dy = rng.normal(size=layer.top_shapes[0])
    io.top_diff[0][...] = dy
    io.bottom[0][...] = np.nan  # backward must not read the bottom
    layer.backward(io, CPU)
    top, dx = ref_pool(x, dy, params)
    assert layer.top_shapes[0] == top.shape
    np.testing.assert_allclose(io.top[0], top, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(io.bottom_diff[0], dx, rtol=1e-12, atol=1e-12)
    return layer, io


@pytest.mark.parametrize("shape,params", CASES)
def test_matches_naive_reference(shape, params):
    check_case(shape, params, np.random.default_rng(0).normal(size=shape))


@pytest.mark.parametrize("params", [{"kernel_size": 3, "stride": 2, "pad": 1},
                                    {"kernel_size": 2, "stride": 1}, {"global_pooling": True}])
def test_max_ties_go_to_the_first_cell(params):
    shape = (2, 2, 6, 5)
    x = np.random.default_rng(0).integers(0, 3, size=shape).astype(np.float64)
    check_case(shape, dict(params, pool="MAX"), x)


def test_padded_cells_never_win_and_count_for_ave():
    x = -np.ones((1, 1, 3, 3))
    layer, io = check_case((1, 1, 3, 3), {"pool": "MAX", "kernel_size": 2, "stride": 2, "pad": 1}, x)
    assert (io.top[0] == -1).all()
    layer, io = check_case((1, 1, 3, 3), {"pool": "AVE", "kernel_size": 2, "stride": 2, "pad": 1}, x)
    np.testing.assert_allclose(io.top[0][0, 0], [[-1 / 4, -2 / 4], [-2 / 4, -4 / 4]])


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_second_forward_after_backward_is_unchanged(pool):
    layer = build("Pooling", {"pool": pool, "kernel_size": 3, "stride": 2, "pad": 1}, [(2, 2, 6, 6)])
    io = run_forward(layer, [np.random.default_rng(0).normal(size=(2, 2, 6, 6))])
    first = io.top[0].copy()
    io.top_diff[0][...] = 1
    layer.backward(io, CPU)
    layer.forward(io, CPU)
    np.testing.assert_array_equal(io.top[0], first)


@pytest.mark.parametrize("params", [
    {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 1},
    {"pool": "MAX", "kernel_size": 2, "stride": 2},
    {"pool": "AVE", "kernel_size": 3, "stride": 2, "pad": 1},
    {"pool": "AVE", "global_pooling": True},
])
def test_gradient_check(params):
    shape = (2, 2, 5, 6)
    rng = np.random.default_rng(0)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01  # no ties, gaps >> eps
    check_gradients(build("Pooling", params, [shape]), [x])


def test_lenet_pool_through_build():
    layer = build("Pooling", {"pool": "MAX", "kernel_size": 2, "stride": 2}, [(64, 20, 24, 24)])
    assert layer.top_shapes == [(64, 20, 12, 12)]
    assert layer.flops() == 64 * 20 * 12 * 12 * 4
    assert not layer.backward_reads_bottom and layer.param_blobs() == []
    x = np.random.default_rng(0).normal(size=(64, 20, 24, 24)).astype(np.float32)
    io = run_forward(layer, [x])
    np.testing.assert_array_equal(io.top[0], x.reshape(64, 20, 12, 2, 12, 2).max(axis=(3, 5)))
    alex = build("Pooling", {"kernel_size": 3, "stride": 2}, [(1, 96, 55, 55)])
    assert alex.top_shapes == [(1, 96, 27, 27)]
    googlenet = build("Pooling", {"kernel_size": 3, "stride": 2}, [(1, 64, 112, 112)])
    assert googlenet.top_shapes == [(1, 64, 56, 56)]  # ceil: 55.5 -> 56


@pytest.mark.parametrize("params,shape,message", [
    ({"pool": "STOCHASTIC", "kernel_size": 2}, (1, 1, 4, 4), "STOCHASTIC is not supported"),
    ({"kernel_size": 2, "pad": 2}, (1, 1, 4, 4), "pad 2x2 must be smaller than the kernel 2x2"),
    ({"kernel_h": 3, "kernel_w": 2, "pad_h": 1, "pad_w": 2}, (1, 1, 4, 4), "pad 1x2 must be smaller"),
    ({"global_pooling": True, "kernel_size": 2}, (1, 1, 4, 4), "global_pooling takes the kernel"),
    ({"global_pooling": True, "stride": 2}, (1, 1, 4, 4), "global_pooling requires pad 0 and stride 1"),
    ({"pool": "AVE"}, (1, 1, 4, 4), r"kernel_size \(or kernel_h and kernel_w\) is required"),
    ({"kernel_size": 2}, (4, 4), "expects a 4-D NCHW bottom, got 2-D"),
    ({"kernel_size": 5}, (1, 1, 3, 4), "kernel 5x5 is larger than the padded input 3x4"),
    ({"kernel_size": 1, "stride": 3}, (1, 1, 5, 5), "starts outside the 5x5 input"),
    ({"kernel_size": 2, "kernel_h": 2, "kernel_w": 2}, (1, 1, 4, 4), "give either kernel or"),
    ({"kernel_size": 2, "pad": 1, "pad_h": 1, "pad_w": 1}, (1, 1, 4, 4), "give either pad or"),
    ({"kernel_size": 2, "stride_h": 1}, (1, 1, 4, 4), "stride_h and stride_w go together"),
])
def test_config_errors(params, shape, message):
    with pytest.raises(ConfigError, match=message) as info:
        build("Pooling", params, [shape], name="pool1")
    assert "layer 'pool1' (Pooling)" in str(info.value)


def test_caffe_fields_accepted():
    layer = build("Pooling", {"pool": "AVE", "kernel_size": 2, "engine": "CUDNN", "round_mode": "FLOOR"},
                  [(1, 1, 5, 5)])
    assert layer.top_shapes == [(1, 1, 4, 4)]


# --- forward-only: no argmax, no padded copy, no buffer ------------------------------------------
ONLY_CASES = CASES + [((2, 3, 1, 5), {"pool": pool, "kernel_size": 2, "stride": 2, "pad": 1})
                      for pool in ("MAX", "AVE")]  # tap (0, 0) falls in no window's input cells


ONLY = StepContext(forward_only=True)  # as the compiler decides for a step with no backward


@pytest.mark.parametrize("shape,params", ONLY_CASES)
def test_forward_only_matches_the_full_forward(shape, params):
    x = np.random.default_rng(0).normal(size=shape)
    full = run_forward(build("Pooling", params, [shape]), [x])
    layer = build("Pooling", params, [shape])
    assert set(layer.buffers(ONLY)) <= {"cells"}
    io = run_forward(layer, [x], ctx=ONLY)
    np.testing.assert_array_equal(io.top[0], full.top[0])  # AVE adds the same cells in the same order
    np.testing.assert_allclose(io.top[0], ref_pool(x, np.zeros(full.top[0].shape), params)[0],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_forward_only_padding_never_wins_and_counts_for_ave(pool):
    x = -np.ones((1, 1, 3, 3))
    layer = build("Pooling", {"pool": pool, "kernel_size": 2, "stride": 2, "pad": 1}, [x.shape])
    top = run_forward(layer, [x], ctx=ONLY).top[0][0, 0]
    expected = [[-1, -1], [-1, -1]] if pool == "MAX" else [[-1 / 4, -2 / 4], [-2 / 4, -4 / 4]]
    np.testing.assert_array_equal(top, expected)


def test_forward_only_keeps_no_argmax_and_bounded_cells():
    layer = build("Pooling", {"pool": "MAX", "kernel_size": 3, "stride": 2}, [(100, 32, 32, 32)])
    bufs = layer.buffers()
    assert bufs["argmax"].shape == (100, 32, 16, 16) and bufs["argmax"].dtype == np.uint8
    only = layer.buffers(ONLY)
    assert set(only) == {"cells"} and np.prod(only["cells"].shape[1:]) <= pooling.CHUNK_CELLS  # per thread
    unpadded = build("Pooling", {"pool": "MAX", "kernel_size": 2, "stride": 1}, [(4, 3, 8, 8)])
    assert unpadded.buffers(ONLY) == {}  # stride 1, no padding: the taps view the bottom itself


def test_forward_only_lenet_pool_float32():
    layer = build("Pooling", {"pool": "MAX", "kernel_size": 2, "stride": 2}, [(64, 20, 24, 24)])
    x = np.random.default_rng(0).normal(size=(64, 20, 24, 24)).astype(np.float32)
    io = run_forward(layer, [x], ctx=ONLY)
    np.testing.assert_array_equal(io.top[0], x.reshape(64, 20, 12, 2, 12, 2).max(axis=(3, 5)))


@pytest.mark.parametrize("bad", [{"kernel_size": 0}, {"kernel_size": 2, "stride": 0},
                                 {"kernel_h": 0, "kernel_w": 2}, {"kernel_size": 2, "pad": -1}])
def test_zero_kernel_or_stride_is_refused_by_the_schema(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        build("Pooling", bad, [(1, 1, 4, 4)])


# --- CPU/GPU parity ----------------------------------------------------------------------------
# The GPU pass adds in the CPU pass's order: the results agree bit for bit.
GPU_CASES = [Case("Pooling", params, [normal(shape)], gpu_rtol=0) for shape, params in CASES]
globals().update(layer_tests(GPU_CASES))


@pytest.mark.parametrize("window", [{"kernel_size": 3, "stride": 2, "pad": 1},
                                    {"kernel_size": 2, "stride": 1},
                                    {"kernel_size": 3, "stride": 3}, {"global_pooling": True}])
def test_gpu_max_ties_pick_the_cpu_cell(gpu_device, window):
    """Many equal values per window: the gradient must reach the same cell as on the CPU."""
    shape = (2, 3, 7, 6)
    x = np.random.default_rng(1).integers(0, 3, size=shape).astype(np.float64)
    x[0, 0] = -5  # a whole plane of one value
    check_parity(build("Pooling", dict(window, pool="MAX"), [shape]), [x], gpu_device, rtol=0)


def test_gpu_max_padding_never_wins(gpu_device):
    x = -np.ones((1, 2, 3, 3))
    cpu, _ = check_parity(build("Pooling", {"kernel_size": 2, "stride": 2, "pad": 1}, [x.shape]),
                          [x], gpu_device, rtol=0)
    assert (cpu.top[0] == -1).all()


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("window", [{"kernel_size": 3, "stride": 2, "pad": 1},
                                    {"kernel_size": 2, "stride": 2}, {"global_pooling": True}])
def test_gpu_forward_only(gpu_device, pool, window):
    layer = build("Pooling", dict(window, pool=pool), [(2, 3, 6, 7)])
    assert set(layer.buffers(ONLY)) <= {"cells"}
    assert layer.buffers(StepContext(forward_only=True, gpu=True)) == {}
    check_parity(layer, [np.random.default_rng(2).normal(size=(2, 3, 6, 7))], gpu_device,
                 backward=False, rtol=0, ctx=ONLY)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_gpu_graph_replay(gpu_device, pool):
    rng = np.random.default_rng(3)
    shape = (2, 2, 6, 6)
    layer = build("Pooling", {"pool": pool, "kernel_size": 3, "stride": 2, "pad": 1}, [shape])
    check_graph_replay(layer, [rng.normal(size=shape)], gpu_device, [rng.normal(size=shape)],
                       new_top_diffs=[rng.normal(size=layer.top_shapes[0])])


# --- float32, exactly as Caffe's loops (issue 14: the CPU pass without index gathers) ------------
def caffe_pool32(x, dy, params):
    """Caffe's Forward_cpu/Backward_cpu in float32, one ``+=`` at a time in its loop order; MAX
    also returns Caffe's mask (the flat h * W + w of each window's first maximum, -1 if none)."""
    N, C, H, W = x.shape
    Ho, Wo = dy.shape[2:]
    kh, kw = (H, W) if params.get("global_pooling") else pair(params, "kernel", None)
    (ph, pw), (sh, sw) = pair(params, "pad", 0), pair(params, "stride", 1)
    top, dx = np.zeros(dy.shape, np.float32), np.zeros_like(x)
    mask = np.full(dy.shape, -1)
    for n, c, oh, ow in np.ndindex(*dy.shape):
        h0, w0 = oh * sh - ph, ow * sw - pw
        h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
        size = np.float32((h1 - h0) * (w1 - w0))
        rows, cols = range(max(h0, 0), min(h1, H)), range(max(w0, 0), min(w1, W))
        if params["pool"] == "MAX":
            best = np.float32(-FLT_MAX)
            for h in rows:
                for w in cols:
                    if x[n, c, h, w] > best:
                        best, mask[n, c, oh, ow] = x[n, c, h, w], h * W + w
            top[n, c, oh, ow] = best
            h, w = divmod(mask[n, c, oh, ow], W)
            dx[n, c, h, w] += dy[n, c, oh, ow]
        else:
            for h in rows:
                for w in cols:
                    top[n, c, oh, ow] += x[n, c, h, w]
                    dx[n, c, h, w] += dy[n, c, oh, ow] / size
            top[n, c, oh, ow] /= size
    return top, dx, mask


EXACT = [  # ceil-mode edge windows with padding, overlapping windows, global pooling
    ((2, 3, 9, 9), {"kernel_size": 3, "stride": 2}),
    ((2, 3, 10, 11), {"kernel_size": 3, "stride": 2, "pad": 1}),   # ceil: an edge window into the pad
    ((2, 3, 10, 10), {"kernel_size": 3, "stride": 3, "pad": 2}),
    ((1, 2, 7, 9), {"kernel_h": 3, "kernel_w": 4, "stride_h": 2, "stride_w": 3, "pad_h": 2, "pad_w": 1}),
    ((2, 2, 6, 6), {"kernel_size": 2, "stride": 1, "pad": 1}),
    ((3, 2, 5, 7), {"global_pooling": True}),
]


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("shape,window", EXACT)
@pytest.mark.parametrize("ties", [False, True])
def test_float32_exactly_as_caffe(shape, window, pool, ties):
    """Bit for bit, ties and Caffe's mask included.  The top diff is a multiple of every window
    size, so each diff sum is exact in any order (Caffe adds a cell's windows in top order, the
    CPU pass in tap order; the two agree to rounding otherwise)."""
    rng = np.random.default_rng(7)
    x = (rng.integers(-2, 3, size=shape) if ties else rng.normal(size=shape)).astype(np.float32)
    params = dict(window, pool=pool)
    layer = build("Pooling", params, [shape])
    io = run_forward(layer, [x])
    dy = (rng.integers(-3, 4, size=layer.top_shapes[0]) * 5040).astype(np.float32)
    io.top_diff[0][...] = dy
    layer.backward(io, CPU)
    top, dx, mask = caffe_pool32(x, dy, params)
    np.testing.assert_array_equal(io.top[0], top)
    np.testing.assert_array_equal(io.bottom_diff[0], dx)
    if pool == "MAX":  # the recorded tap names the cell of Caffe's mask
        kh, kw = layer.kh, layer.kw
        i, j = np.divmod(io.buf["argmax"].astype(int), kw)
        oh, ow = np.indices(top.shape[2:])
        h, w = oh * layer.sh - layer.ph + i, ow * layer.sw - layer.pw + j
        np.testing.assert_array_equal(h * shape[3] + w, mask)
        assert io.buf["argmax"].max() < kh * kw


def test_max_ties_across_overlapping_windows_go_to_the_first_cell():
    """A plane of one value: each window's first cell wins, and a cell shared by windows gets
    the diff of each window it won in, none of the others'."""
    x = np.zeros((1, 1, 5, 5), np.float32)
    layer = build("Pooling", {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 1}, [x.shape])
    io = run_forward(layer, [x])
    io.top_diff[0][...] = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    layer.backward(io, CPU)
    # windows start at -1, 1, 3: the first cell inside is 0, 1, 3 along each axis
    expected = np.zeros((5, 5), np.float32)
    for a, h in enumerate((0, 1, 3)):
        for b, w in enumerate((0, 1, 3)):
            expected[h, w] += 3 * a + b + 1
    np.testing.assert_array_equal(io.bottom_diff[0][0, 0], expected)
    np.testing.assert_array_equal(io.buf["argmax"][0, 0], [[4, 3, 3], [1, 0, 0], [1, 0, 0]])  # i * 3 + j


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_chunks_and_large_taps(pool, monkeypatch):
    """Several chunks (the last one short) give what one chunk gives; a global window of more
    than 256 cells keeps its argmax in a wider type."""
    shape, params = (3, 5, 9, 8), {"pool": pool, "kernel_size": 3, "stride": 2, "pad": 1}
    x = np.random.default_rng(0).normal(size=shape)
    whole = check_case(shape, params, x)[1]
    monkeypatch.setattr(pooling, "CHUNK_CELLS", 2 * 11 * 2 * 6)  # 2 planes of 11x(2x6) a chunk, 15 planes
    layer, io = check_case(shape, params, x)
    assert layer.chunk == 2
    np.testing.assert_array_equal(io.top[0], whole.top[0])
    np.testing.assert_array_equal(io.bottom_diff[0], whole.bottom_diff[0])
    big = (2, 2, 17, 18)
    layer, io = check_case(big, {"pool": pool, "global_pooling": True},
                           np.random.default_rng(1).normal(size=big))
    if pool == "MAX":
        assert io.buf["argmax"].dtype == np.uint16


def test_a_bottom_that_is_a_view_of_a_wider_blob():
    """The bottom may be any strided array (a copy is taken); what the pass writes is a view."""
    wide = np.random.default_rng(2).normal(size=(2, 5, 7, 7))
    params = {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 1}
    layer = build("Pooling", params, [(2, 2, 7, 7)])
    io = run_forward(layer, [wide[:, 1:3]])
    np.testing.assert_array_equal(io.top[0], run_forward(layer, [wide[:, 1:3].copy()]).top[0])


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_chunks_shared_among_threads_match_one_thread(pool, count, monkeypatch):
    """Each chunk is one thread's, with its own scratch slice: any thread count gives what one
    thread gives, bit for bit, ties included (integer-valued bottoms)."""
    shape, params = (3, 5, 9, 8), {"pool": pool, "kernel_size": 3, "stride": 2, "pad": 1}
    x = np.random.default_rng(3).integers(-2, 3, size=shape).astype(float)
    monkeypatch.setattr(pooling, "CHUNK_CELLS", 2 * 11 * 2 * 6)  # 8 chunks of 2 planes, the last 1
    monkeypatch.setattr(pooling, "THREAD_CELLS", 0)  # threads even for a pass this small
    monkeypatch.setattr(threads, "count", lambda: 1)
    one = check_case(shape, params, x)[1]
    monkeypatch.setattr(threads, "count", lambda: count)
    layer, io = check_case(shape, params, x)
    assert io.buf["masked"].shape[0] == count
    np.testing.assert_array_equal(io.top[0], one.top[0])
    np.testing.assert_array_equal(io.bottom_diff[0], one.bottom_diff[0])
    if pool == "MAX":
        np.testing.assert_array_equal(io.buf["argmax"], one.buf["argmax"])
