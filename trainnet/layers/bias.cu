// Bias: y = x + b with b broadcast; x is seen as (outer, dim, inner) and b runs along dim.
#include "common.cuh"

extern "C" __global__ void bias_forward(float* y, const float* x, const float* b, i64 dim,
                                        i64 inner, i64 n) {
    GRID_STRIDE(i, n) y[i] = x[i] + b[i / inner % dim];
}

// db[d] = sum of dy over outer and inner: one block per element of b.
extern "C" __global__ void bias_backward(float* db, const float* dy, i64 outer, i64 dim,
                                         i64 inner) {
    const float total = channel_sum(dy, outer, dim, inner, blockIdx.x);
    if (threadIdx.x == 0) db[blockIdx.x] = total;
}

// dx = dy, elementwise so that dx may be dy itself (in place).
extern "C" __global__ void bias_backward_data(float* dx, const float* dy, i64 n) {
    GRID_STRIDE(i, n) dx[i] = dy[i];
}
