// MVN: one block per row of dim elements (an (n, c) over H*W, or an n over C*H*W), its sums by
// block_sum.  Each thread reads back only the elements it wrote itself.
#include "common.cuh"

// y = x - mean; with normalize, divisor = sqrt(mean of y^2) + eps and y /= divisor.
// divisor is written only when normalize.
extern "C" __global__ void mvn_forward(float* top, float* divisor, const float* x, i64 dim,
                                       float inv_dim, int normalize, float eps) {
    const i64 row = blockIdx.x;
    const float* xr = x + row * dim;
    float* yr = top + row * dim;
    float s = 0.0f;
    BLOCK_STRIDE(j, dim) s += xr[j];
    const float mean = block_sum(s) * inv_dim;
    s = 0.0f;
    BLOCK_STRIDE(j, dim) {
        const float v = xr[j] - mean;
        yr[j] = v;
        s += v * v;
    }
    if (!normalize) return;
    const float d = sqrtf(block_sum(s) * inv_dim) + eps;
    if (threadIdx.x == 0) divisor[row] = d;
    BLOCK_STRIDE(j, dim) yr[j] = yr[j] / d;
}

// Caffe's backward: with normalize dx = (dy - (y * sum(y dy) + sum(dy)) / dim) / divisor,
// else dx = dy - mean(dy).  top and divisor are read only when normalize.
extern "C" __global__ void mvn_backward(float* dx, const float* dy, const float* top,
                                        const float* divisor, i64 dim, float inv_dim,
                                        int normalize) {
    const i64 row = blockIdx.x;
    const float* dyr = dy + row * dim;
    const float* yr = top + row * dim;
    float* dxr = dx + row * dim;
    float s = 0.0f;
    BLOCK_STRIDE(j, dim) s += dyr[j];
    const float dy_sum = block_sum(s);
    if (!normalize) {
        const float mean = dy_sum * inv_dim;
        BLOCK_STRIDE(j, dim) dxr[j] = dyr[j] - mean;
        return;
    }
    s = 0.0f;
    BLOCK_STRIDE(j, dim) s += yr[j] * dyr[j];
    const float ydy_sum = block_sum(s);
    const float d = divisor[row];
    BLOCK_STRIDE(j, dim) dxr[j] = ((yr[j] * ydy_sum + dy_sum) * -inv_dim + dyr[j]) / d;
}
