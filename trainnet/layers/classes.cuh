// Rows of class scores: an (outer, C, inner) blob whose row (outer, inner) holds C values lying
// `inner` apart.  Shared by Softmax, SoftmaxWithLoss and Accuracy.
#pragma once
#include "common.cuh"

#define LABEL_IGNORED (-1)
#define LABEL_BAD (-2)

// The first element of row r.
__device__ __forceinline__ i64 row_base(i64 r, int C, i64 inner) {
    return r / inner * C * inner + r % inner;
}

// y = exp(x - max x) / sum exp(x - max x) over the row at `base`, as the CPU pass.
__device__ __forceinline__ void softmax_row(float* y, const float* x, i64 base, int C, i64 inner) {
    float m = x[base];
    for (int c = 1; c < C; ++c) {
        const float v = x[base + c * inner];
        if (v > m || v != v) m = v;  // a NaN wins, as in np.max
    }
    float sum = 0.0f;
    for (int c = 0; c < C; ++c) {
        const float e = expf(x[base + c * inner] - m);
        y[base + c * inner] = e;
        sum += e;
    }
    for (int c = 0; c < C; ++c) y[base + c * inner] /= sum;
}

// The code of label value `v`: its class (truncated to an integer, as Caffe), LABEL_IGNORED,
// or LABEL_BAD for a counted label outside [0, C) (which the CPU pass refuses; a GPU pass
// cannot stop mid-graph, so it turns its output into NaN instead).
__device__ __forceinline__ i64 label_code(float v, int C, int has_ignore, i64 ignore) {
    if (!(fabsf(v) < 9.2e18f)) return LABEL_BAD;  // NaN, infinite, or past int64
    const i64 k = (i64)v;
    if (has_ignore && k == ignore) return LABEL_IGNORED;
    return k >= 0 && k < C ? k : LABEL_BAD;
}
