// Elementwise helpers of the runtime: fills and sums of gradients.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* out, float value, i64 n) {
    GRID_STRIDE(i, n) out[i] = value;
}

// y += alpha * x (shared parameters' gradients, iter_size accumulation)
extern "C" __global__ void axpy_f32(float* y, const float* x, float alpha, i64 n) {
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
