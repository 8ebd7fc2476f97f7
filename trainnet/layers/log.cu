// Log: y = ln(scale x + shift) base_scale, base_scale = 1 / ln(base); backward reads the bottom.
#include "common.cuh"

extern "C" __global__ void log_forward(float* y, const float* x, float scale, float shift,
                                       float base_scale, i64 n) {
    GRID_STRIDE(i, n) y[i] = logf(x[i] * scale + shift) * base_scale;
}

// dx = dy backward_scale / (scale x + shift), backward_scale = scale / ln(base)
extern "C" __global__ void log_backward(float* dx, const float* dy, const float* x, float scale,
                                        float shift, float backward_scale, i64 n) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * ((1.0f / (x[i] * scale + shift)) * backward_scale);
}
