// Convolution: im2col over a chunk of images, cuBLAS GEMMs (in convolution.py), and an epilogue
// that adds the bias, applies a fused ReLU and transposes the GEMM's output into the NCHW top.
// Backward: the top gradient (masked by a fused ReLU) into the GEMM layout, the bias gradient as
// row sums, and col2im as a gather per bottom element (no atomics, deterministic).
#include "common.cuh"
#include "im2col.cuh"

// The columns of n images (see im2col in im2col.cuh).
extern "C" __global__ void convolution_im2col(float* col, const float* x, CONV_GEOMETRY, int n,
                                              int cg, i64 rows, i64 image_stride, i64 row_stride) {
    im2col(col, x, CONV_GEOMETRY_ARGS, n, cg, rows, image_stride, row_stride);
}

// top[image, co, p] = src[co * src_channel + image * src_image + p] (+ bias[co]) (then max(., 0)).
// src may be top itself (src_channel = hw, src_image = cout * hw).  bias is not read when
// has_bias is 0.
extern "C" __global__ void convolution_forward_epilogue(float* top, const float* src,
                                                        const float* bias, int has_bias, int relu,
                                                        int cout, i64 hw, i64 src_channel,
                                                        i64 src_image, i64 count) {
    GRID_STRIDE(i, count) {
        i64 p = i % hw, co = i / hw % cout, image = i / hw / cout;
        float v = src[co * src_channel + image * src_image + p];
        if (has_bias) v += bias[co];
        top[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

// out[co, image * hw + p] = dy[image, co, p]; with a fused ReLU dy is first zeroed in place
// where the (post-ReLU) top is not positive.
extern "C" __global__ void convolution_backward_top(float* out, float* dy, const float* top,
                                                    int relu, int cout, i64 hw, i64 m, i64 count) {
    GRID_STRIDE(i, count) {
        i64 p = i % hw, co = i / hw % cout, image = i / hw / cout;
        float v = dy[i];
        if (relu && !(top[i] > 0.0f)) dy[i] = v = 0.0f;
        out[co * m + image * hw + p] = v;
    }
}

// db[row] = sum of out[row, 0..m): one block per row.
extern "C" __global__ void convolution_bias_backward(float* db, const float* out, i64 m) {
    const float* row = out + (i64)blockIdx.x * m;
    float s = 0.0f;
    BLOCK_STRIDE(q, m) s += row[q];
    float total = block_sum(s);
    if (threadIdx.x == 0) db[blockIdx.x] = total;
}

// dx[image, c, y, x] = the sum of the column cells (laid out as im2col writes them for the whole
// batch) of every tap and window that read bottom (y, x).
extern "C" __global__ void convolution_col2im(float* dx, const float* col, CONV_GEOMETRY, int n) {
    GRID_STRIDE(i, (i64)n * C * H * W) dx[i] = col2im_sum(col, i, CONV_GEOMETRY_ARGS, n);
}
