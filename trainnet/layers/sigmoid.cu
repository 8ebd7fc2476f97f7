// Sigmoid: y = 0.5 tanh(x / 2) + 0.5; backward dx = dy y (1 - y) reads only the top.
#include "common.cuh"
#include "neuron.cuh"

extern "C" __global__ void sigmoid_forward(float* y, const float* x, i64 n) {
    GRID_STRIDE(i, n) y[i] = sigmoid_of(x[i]);
}

extern "C" __global__ void sigmoid_backward(float* dx, const float* dy, const float* y, i64 n) {
    GRID_STRIDE(i, n) {
        float s = y[i];
        dx[i] = dy[i] * ((1.0f - s) * s);
    }
}
