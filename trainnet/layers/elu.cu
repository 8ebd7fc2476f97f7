// ELU: y = x for x > 0, else alpha (exp(x) - 1); backward reads only the top (alpha >= 0).
#include "common.cuh"

extern "C" __global__ void elu_forward(float* y, const float* x, float alpha, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = v > 0.0f ? v : alpha * expm1f(v);
    }
}

extern "C" __global__ void elu_backward(float* dx, const float* dy, const float* y, float alpha,
                                        i64 n) {
    GRID_STRIDE(i, n) {
        float t = y[i];
        dx[i] = t > 0.0f ? dy[i] : dy[i] * (t + alpha);
    }
}
