// Scale: y = x * s (+ b) with s and b broadcast; x is seen as (outer, dim, inner) and s, b run
// along dim.
#include "common.cuh"

// b is not read when has_bias is 0.
extern "C" __global__ void scale_forward(float* y, const float* x, const float* s, const float* b,
                                         int has_bias, i64 dim, i64 inner, i64 n) {
    GRID_STRIDE(i, n) {
        const i64 d = i / inner % dim;
        float v = x[i] * s[d];
        if (has_bias) v += b[d];
        y[i] = v;
    }
}

// ds[d] = sum dy * x and db[d] = sum dy over outer and inner: one block per element of s.
// An output whose flag is 0 is not written.
extern "C" __global__ void scale_backward_params(float* ds, float* db, const float* dy,
                                                 const float* x, int want_scale, int want_bias,
                                                 i64 outer, i64 dim, i64 inner) {
    const i64 d = blockIdx.x;
    float sx = 0.0f, s1 = 0.0f;
    BLOCK_STRIDE(k, outer * inner) {
        const i64 i = (k / inner * dim + d) * inner + k % inner;
        if (want_scale) sx += dy[i] * x[i];
        s1 += dy[i];
    }
    const float total_x = block_sum(sx);
    const float total = block_sum(s1);
    if (threadIdx.x == 0) {
        if (want_scale) ds[d] = total_x;
        if (want_bias) db[d] = total;
    }
}

// dx = dy * s, elementwise so that dx may be dy itself (in place).
extern "C" __global__ void scale_backward_data(float* dx, const float* dy, const float* s,
                                               i64 dim, i64 inner, i64 n) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * s[i / inner % dim];
}
