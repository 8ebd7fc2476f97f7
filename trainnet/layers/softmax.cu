// Softmax over axis 1 of an (outer, C, inner) blob: one thread per row (outer, inner), whose C
// values lie `inner` apart.  y = exp(x - max x) / sum exp(x - max x), as the CPU pass.
#include "classes.cuh"
extern "C" __global__ void softmax_forward(float* y, const float* x, i64 rows, int C, i64 inner) {
    GRID_STRIDE(r, rows) softmax_row(y, x, row_base(r, C, inner), C, inner);
}


// dx = (dy - sum_c dy y) * y
extern "C" __global__ void softmax_backward(float* dx, const float* dy, const float* y, i64 rows,
                                            int C, i64 inner) {
    GRID_STRIDE(r, rows) {
        const i64 base = row_base(r, C, inner);
        float dot = 0.0f;
        for (int c = 0; c < C; ++c) dot += dy[base + c * inner] * y[base + c * inner];
        for (int c = 0; c < C; ++c) {
            const i64 i = base + c * inner;
            dx[i] = (dy[i] - dot) * y[i];
        }
    }
}
