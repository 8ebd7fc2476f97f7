// Swish: y = x s, s = sigmoid(beta x), kept for backward when `keep` is set;
// dx = dy ((1 - s) beta y + s), which reads the top and s but not the bottom.
#include "common.cuh"
#include "neuron.cuh"

extern "C" __global__ void swish_forward(float* y, float* sig, const float* x, float beta,
                                         int keep, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float s = sigmoid_of(v * beta);
        if (keep) sig[i] = s;
        y[i] = v * s;
    }
}

extern "C" __global__ void swish_backward(float* dx, const float* dy, const float* y,
                                          const float* sig, float beta, i64 n) {
    GRID_STRIDE(i, n) {
        float s = sig[i];
        dx[i] = dy[i] * ((1.0f - s) * y[i] * beta + s);
    }
}
