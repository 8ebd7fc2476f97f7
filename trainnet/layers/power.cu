// Power: y = (shift + scale x)^power; the constant case (power * scale == 0) is a fill.
#include "common.cuh"

extern "C" __global__ void power_forward(float* y, const float* x, float power, float scale,
                                         float shift, i64 n) {
    GRID_STRIDE(i, n) {
        float u = x[i] * scale + shift;
        y[i] = power == 1.0f ? u : powf(u, power);
    }
}

// dx = dy power scale (shift + scale x)^(power - 1); x is not read when power is 1.
extern "C" __global__ void power_backward(float* dx, const float* dy, const float* x, float power,
                                          float scale, float shift, i64 n) {
    const float diff_scale = power * scale;
    GRID_STRIDE(i, n) {
        float f = diff_scale;
        if (power != 1.0f) f = powf(x[i] * scale + shift, power - 1.0f) * diff_scale;
        dx[i] = dy[i] * f;
    }
}
