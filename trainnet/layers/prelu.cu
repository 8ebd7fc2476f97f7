// PReLU: y = max(x, 0) + a[c] min(x, 0) over an (N, C, dim) bottom; `slopes` is C, or 1 when
// the slope is shared (then every element reads a[0]).
#include "common.cuh"

extern "C" __global__ void prelu_forward(float* y, const float* x, const float* slope,
                                         i64 slopes, i64 dim, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = v > 0.0f ? v : v * slope[(i / dim) % slopes];
    }
}

extern "C" __global__ void prelu_backward(float* dx, const float* dy, const float* x,
                                          const float* slope, i64 slopes, i64 dim, i64 n) {
    GRID_STRIDE(i, n) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope[(i / dim) % slopes];
}

// da[k] = sum of dy min(x, 0) over the elements slope k scales: one block per slope.  Slope k
// owns `inner` consecutive elements in each of the `num` rows of `row` elements, starting at
// k * inner (a shared slope owns whole rows).  block_sum adds in a fixed order: deterministic.
extern "C" __global__ void prelu_slope_backward(float* da, const float* dy, const float* x,
                                                i64 num, i64 inner, i64 row) {
    const i64 k = blockIdx.x;
    float s = 0.0f;
    BLOCK_STRIDE(j, num * inner) {
        i64 idx = (j / inner) * row + k * inner + j % inner;
        float v = x[idx];
        if (v < 0.0f) s += dy[idx] * v;
    }
    float total = block_sum(s);
    if (threadIdx.x == 0) da[k] = total;
}
