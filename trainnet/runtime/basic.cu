// Elementwise helpers of the runtime: fills, sums of gradients, the iteration's bookkeeping.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* out, float value, i64 n) {
    GRID_STRIDE(i, n) out[i] = value;
}

// y += alpha * x (shared parameters' gradients, iter_size accumulation)
extern "C" __global__ void axpy_f32(float* y, const float* x, float alpha, i64 n) {
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// dst = src for float32 arrays of n elements (what cudaMemcpy would do, as a kernel)
extern "C" __global__ void copy_f32(float* dst, const float* src, i64 n) {
    GRID_STRIDE(i, n) dst[i] = src[i];
}

// counter += 1 (a single thread): advances a counter-based generator between passes
extern "C" __global__ void tick_u64(u64* counter) {
    if (blockIdx.x == 0 && threadIdx.x == 0) counter[0] += 1;
}

// out[0] = sum of x[0..n) (one block; a fixed order of additions for a given blockDim)
extern "C" __global__ void sum_f32(float* out, const float* x, i64 n) {
    __shared__ float scratch[1024];
    float s = 0.0f;
    BLOCK_STRIDE(i, n) s += x[i];
    float total = block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] = total;
}
