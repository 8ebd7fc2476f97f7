// Threshold: y = 1 where x > threshold, else 0 (no backward, as in Caffe).
#include "common.cuh"

extern "C" __global__ void threshold_forward(float* y, const float* x, float threshold, i64 n) {
    GRID_STRIDE(i, n) y[i] = x[i] > threshold ? 1.0f : 0.0f;
}
