// Softmax over axis 1 of an (outer, C, inner) blob: one thread per row (outer, inner), whose C
// values lie `inner` apart.  y = exp(x - max x) / sum exp(x - max x), as the CPU pass.
#include "common.cuh"

extern "C" __global__ void softmax_forward(float* y, const float* x, i64 rows, int C, i64 inner) {
    GRID_STRIDE(r, rows) {
        const i64 base = r / inner * C * inner + r % inner;
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
}

// dx = (dy - sum_c dy y) * y
extern "C" __global__ void softmax_backward(float* dx, const float* dy, const float* y, i64 rows,
                                            int C, i64 inner) {
    GRID_STRIDE(r, rows) {
        const i64 base = r / inner * C * inner + r % inner;
        float dot = 0.0f;
        for (int c = 0; c < C; ++c) dot += dy[base + c * inner] * y[base + c * inner];
        for (int c = 0; c < C; ++c) {
            const i64 i = base + c * inner;
            dx[i] = (dy[i] - dot) * y[i];
        }
    }
}
