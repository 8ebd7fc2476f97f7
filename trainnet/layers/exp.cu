// Exp: y = outer exp(inner x) (inner = scale ln base, outer = base^shift); dx = dy y inner.
#include "common.cuh"

extern "C" __global__ void exp_forward(float* y, const float* x, float inner, float outer, i64 n) {
    GRID_STRIDE(i, n) y[i] = expf(x[i] * inner) * outer;
}

extern "C" __global__ void exp_backward(float* dx, const float* dy, const float* y, float inner,
                                        i64 n) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * y[i] * inner;
}
