"""The emulated GPU (tests/emulation) runs blocks with their real threads and catches what a
GPU would get wrong: a reduction missing a barrier, a shared-memory race, a divergent barrier."""

from pathlib import Path

import numpy as np
import pytest

from emulation.backend import THREADS, EmulatedBackend, EmulationError, compiler

pytestmark = pytest.mark.skipif(compiler() is None, reason="no GCC C++ compiler for the emulated GPU")

HEADER = """
typedef long long i64;
#define GRID_STRIDE(i, n) \\
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); \\
         i += (i64)blockDim.x * gridDim.x)
"""

# partials[block] = the sum of the block's grid-stride items, by a shared-memory tree; with
# SYNC_IN_LOOP empty, the tree reads partial sums other threads have not finished writing.
REDUCE = HEADER + """
extern "C" __global__ void block_reduce(float* partials, const float* x, i64 n) {
    __shared__ float scratch[1024];
    float s = 0.0f;
    GRID_STRIDE(i, n) s += x[i];
    scratch[threadIdx.x] = s;
    __syncthreads();
    for (unsigned step = blockDim.x / 2; step > 0; step >>= 1) {
        if (threadIdx.x < step) scratch[threadIdx.x] += scratch[threadIdx.x + step];
        SYNC_IN_LOOP
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = scratch[0];
}
"""

WHERE = HEADER + """
extern "C" __global__ void where(float* thread, float* block, i64 n) {
    GRID_STRIDE(i, n) {
        thread[i] = (float)threadIdx.x;
        block[i] = (float)blockIdx.x;
    }
}
"""

# each thread reads its neighbour's word: with no barrier between, a race
NEIGHBOUR = HEADER + """
extern "C" __global__ void rotate(float* y, const float* x) {
    __shared__ float slot[1024];
    slot[threadIdx.x] = x[threadIdx.x];
    BARRIER
    y[threadIdx.x] = slot[(threadIdx.x + 1) % blockDim.x];
}
"""

# every thread that finds a negative value sets one flag: the same value, so no race; storing
# the thread's index instead is one
FLAG = HEADER + """
extern "C" __global__ void any_negative(int* out, const float* x) {
    __shared__ int flag;
    if (threadIdx.x == 0) flag = -1;
    __syncthreads();
    if (x[threadIdx.x] < 0.0f) flag = VALUE;
    __syncthreads();
    if (threadIdx.x == 0) out[0] = flag;
}
"""

# every thread adds into one shared word: atomics, no race
ATOMIC = HEADER + """
extern "C" __global__ void count(float* out) {
    __shared__ float total;
    if (threadIdx.x == 0) total = 0.0f;
    __syncthreads();
    atomicAdd(&total, 1.0f);
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = total;
}
"""

DIVERGENT = HEADER + """
extern "C" __global__ void halves(float* y) {
    if (threadIdx.x < blockDim.x / 2) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}
"""

UNINITIALIZED = HEADER + """
extern "C" __global__ void past_the_end(float* y) {
    __shared__ float s[1024];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x + blockDim.x];
}
"""


def source(tmp_path: Path, text: str, **defines) -> Path:
    for key, value in defines.items():
        text = text.replace(key, value)
    path = tmp_path / "kernel.cu"
    path.write_text(text)
    return path


def test_a_block_reduction_runs_on_several_threads_and_blocks(tmp_path):
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    blocks = 4
    partials = np.zeros(blocks, np.float32)
    EmulatedBackend().launch_blocks(source(tmp_path, REDUCE, SYNC_IN_LOOP="__syncthreads();"),
                                    "block_reduce", blocks, 256, partials, x, np.int64(x.size))
    owner = np.arange(x.size) // THREADS % blocks  # the block whose grid-stride loop holds i
    expected = [x[owner == b].astype(np.float64).sum() for b in range(blocks)]
    np.testing.assert_allclose(partials, expected, rtol=1e-5, atol=1e-5)


def test_threads_and_blocks_are_real(tmp_path):
    n = 300
    thread, block = np.zeros(n, np.float32), np.zeros(n, np.float32)
    backend = EmulatedBackend()
    backend.launch(source(tmp_path, WHERE), "where", n, thread, block, np.int64(n))
    i = np.arange(n)
    np.testing.assert_array_equal(thread, i % THREADS)
    np.testing.assert_array_equal(block, i // THREADS % backend.max_blocks)
    assert THREADS > 1 and len(set(block)) == backend.max_blocks


def test_a_reduction_missing_a_barrier_is_a_race(tmp_path):
    x = np.ones(1000, np.float32)
    partials = np.zeros(4, np.float32)
    with pytest.raises(EmulationError, match=r"kernel block_reduce .*race.*kernel\.cu:\d+"):
        EmulatedBackend().launch_blocks(source(tmp_path, REDUCE, SYNC_IN_LOOP=""),
                                        "block_reduce", 4, 256, partials, x, np.int64(x.size))


def test_reading_another_threads_shared_word_before_the_barrier_is_a_race(tmp_path):
    x = np.arange(THREADS, dtype=np.float32)
    y = np.zeros(THREADS, np.float32)
    with pytest.raises(EmulationError, match=r"kernel rotate .*race.*slot\[\d+\]"):
        EmulatedBackend().launch_blocks(source(tmp_path, NEIGHBOUR, BARRIER=""), "rotate", 1,
                                        THREADS, y, x)
    EmulatedBackend().launch_blocks(source(tmp_path, NEIGHBOUR, BARRIER="__syncthreads();"),
                                    "rotate", 1, THREADS, y, x)
    np.testing.assert_array_equal(y, np.roll(x, -1))


def test_threads_writing_one_shared_word_race_only_with_different_values(tmp_path):
    x = np.ones(THREADS, np.float32)
    x[[3, 7]] = -1.0
    out = np.zeros(1, np.int32)
    EmulatedBackend().launch_blocks(source(tmp_path, FLAG, VALUE="1"), "any_negative", 1,
                                    THREADS, out, x)
    assert out[0] == 1
    with pytest.raises(EmulationError, match=r"kernel any_negative .*write different values"):
        EmulatedBackend().launch_blocks(source(tmp_path, FLAG, VALUE="(int)threadIdx.x"),
                                        "any_negative", 1, THREADS, out, x)


def test_atomics_on_one_shared_word_are_no_race(tmp_path):
    out = np.zeros(3, np.float32)
    EmulatedBackend().launch_blocks(source(tmp_path, ATOMIC), "count", 3, THREADS, out)
    np.testing.assert_array_equal(out, THREADS)


def test_a_divergent_barrier_is_an_error(tmp_path):
    y = np.zeros(THREADS, np.float32)
    with pytest.raises(EmulationError, match=r"kernel halves .*__syncthreads\(\) at line \d+ "
                                             r"reached by \d+ threads"):
        EmulatedBackend().launch_blocks(source(tmp_path, DIVERGENT), "halves", 1, THREADS, y)


def test_reading_shared_memory_no_thread_wrote_is_an_error(tmp_path):
    y = np.zeros(THREADS, np.float32)
    with pytest.raises(EmulationError, match=r"kernel past_the_end .*uninitialized"):
        EmulatedBackend().launch_blocks(source(tmp_path, UNINITIALIZED), "past_the_end", 1,
                                        THREADS, y)
