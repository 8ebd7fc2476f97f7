// InnerProduct: the GEMMs are cuBLAS calls (inner_product.py); these are the epilogue that adds
// the bias and applies a fused ReLU, the fused ReLU's mask of the top gradient, and the bias
// gradient.
#include "common.cuh"

// y[i, n] = y[i, n] (+ bias[n]) (then max(., 0)), in place over the (M, N) top.  bias is not
// read when has_bias is 0.
extern "C" __global__ void inner_product_forward_epilogue(float* y, const float* bias,
                                                          int has_bias, int relu, i64 N,
                                                          i64 count) {
    GRID_STRIDE(i, count) {
        float v = y[i];
        if (has_bias) v += bias[i % N];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

// dy = 0 where the (post-ReLU) top is not positive: the backward of a fused ReLU, in place.
extern "C" __global__ void inner_product_relu_backward(float* dy, const float* top, i64 count) {
    GRID_STRIDE(i, count) {
        if (!(top[i] > 0.0f)) dy[i] = 0.0f;
    }
}

// db[n] = sum over rows of dy[., n] for an (M, N) dy: one block per column.
extern "C" __global__ void inner_product_bias_backward(float* db, const float* dy, i64 M, i64 N) {
    const float total = channel_sum(dy, M, N, 1, blockIdx.x);
    if (threadIdx.x == 0) db[blockIdx.x] = total;
}
