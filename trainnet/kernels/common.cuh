// Shared by every trainnet kernel.  Kernels are 1-D: either a grid-stride loop over n work
// items (launched by backend.launch) or one block per row with a block-wide loop
// (backend.launch_blocks).  Nothing may assume a particular blockDim or gridDim.
#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

#define GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); \
         i += (i64)blockDim.x * gridDim.x)

#define BLOCK_STRIDE(i, n) for (i64 i = threadIdx.x; i < (i64)(n); i += blockDim.x)

// max and min that keep a NaN, as NumPy's maximum and minimum do (fmaxf and fminf drop it):
// a NaN must reach the loss on the GPU as on the CPU, or divergence would go unseen.
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float nan_min(float a, float b) { return (a < b || a != a) ? a : b; }

// The quiet NaN a kernel writes where the CPU writes np.nan (a bad label, say).
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fffffff); }

// Block-wide sum of one float per thread in a fixed order; every thread gets the total
// (blockDim.x a power of two, at most 1024).  The scratch is this function's own __shared__
// array, one per kernel, sized for 1024 threads and reused by every call: the barrier after
// the total is read makes that safe, so a kernel calls it as often as it likes.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float block_sum_scratch[1024];
    float* scratch = block_sum_scratch;
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) scratch[threadIdx.x] += scratch[threadIdx.x + s];
        __syncthreads();
    }
    float total = scratch[0];
    __syncthreads();
    return total;
}

// Block-wide sum of channel c of x seen as (outer, dim, inner): over outer and inner, each
// thread's share in a fixed order, so a bias gradient is the same from run to run.  Every thread
// gets the total.
__device__ __forceinline__ float channel_sum(const float* x, i64 outer, i64 dim, i64 inner,
                                             i64 c) {
    float s = 0.0f;
    BLOCK_STRIDE(k, outer * inner) s += x[(k / inner * dim + c) * inner + k % inner];
    return block_sum(s);
}

// Philox4x32-10 (Salmon et al., SC'11): a counter-based generator.  Returns the first word
// of the block for counter (c0, c1, c2, c3) and key (k0, k1); layers/rng.py computes the same
// numbers with NumPy, so CPU and GPU draw identical masks.
__device__ __forceinline__ u32 philox_mulhi(u32 a, u32 b, u32* lo) {
    u64 p = (u64)a * (u64)b;
    *lo = (u32)p;
    return (u32)(p >> 32);
}

__device__ __forceinline__ u32 philox4x32(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        u32 lo0, lo1;
        u32 hi0 = philox_mulhi(0xD2511F53u, c0, &lo0);
        u32 hi1 = philox_mulhi(0xCD9E8D57u, c2, &lo1);
        u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    return c0;
}

// A uniform float in [0, 1) from 24 random bits (exact in float32, equal on CPU and GPU).
__device__ __forceinline__ float uniform24(u32 bits) {
    return (float)(bits >> 8) * (1.0f / 16777216.0f);
}
