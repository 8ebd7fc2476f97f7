// ReLU: y = max(x, 0) + slope * min(x, 0); backward reads y (y > 0 exactly where x > 0).
#include "common.cuh"

extern "C" __global__ void relu_forward(float* y, const float* x, float slope, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = v > 0.0f ? v : v * slope;
    }
}

extern "C" __global__ void relu_backward(float* dx, const float* dy, const float* y, float slope,
                                         i64 n) {
    GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : dy[i] * slope;
}
