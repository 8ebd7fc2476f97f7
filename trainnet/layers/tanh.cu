// TanH: y = tanh(x); backward dx = dy (1 - y^2) reads only the top.
#include "common.cuh"

extern "C" __global__ void tanh_forward(float* y, const float* x, i64 n) {
    GRID_STRIDE(i, n) y[i] = tanhf(x[i]);
}

extern "C" __global__ void tanh_backward(float* dx, const float* dy, const float* y, i64 n) {
    GRID_STRIDE(i, n) {
        float t = y[i];
        dx[i] = dy[i] * (1.0f - t * t);
    }
}
