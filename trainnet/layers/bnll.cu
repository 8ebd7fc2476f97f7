// BNLL: y = max(x, 0) + log1p(exp(-|x|)) (softplus); dx = dy e / (e + 1), e = exp(min(x, 50)).
#include "common.cuh"

extern "C" __global__ void bnll_forward(float* y, const float* x, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v)));
    }
}

extern "C" __global__ void bnll_backward(float* dx, const float* dy, const float* x,
                                         float threshold, i64 n) {
    GRID_STRIDE(i, n) {
        float e = expf(fminf(x[i], threshold));
        dx[i] = dy[i] * e / (e + 1.0f);
    }
}
