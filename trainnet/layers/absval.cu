// AbsVal: y = |x|; backward dx = dy sign(x), with sign(0) = 0.
#include "common.cuh"

extern "C" __global__ void absval_forward(float* y, const float* x, i64 n) {
    GRID_STRIDE(i, n) y[i] = fabsf(x[i]);
}

extern "C" __global__ void absval_backward(float* dx, const float* dy, const float* x, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        dx[i] = dy[i] * (float)((v > 0.0f) - (v < 0.0f));
    }
}
