// Clip: y = max(lo, min(x, hi)); dx = dy where lo <= x <= hi, else 0.
#include "common.cuh"

extern "C" __global__ void clip_forward(float* y, const float* x, float lo, float hi, i64 n) {
    GRID_STRIDE(i, n) y[i] = nan_max(nan_min(x[i], hi), lo);
}

extern "C" __global__ void clip_backward(float* dx, const float* dy, const float* x, float lo,
                                         float hi, i64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        dx[i] = v >= lo && v <= hi ? dy[i] : 0.0f;
    }
}
