// Deconvolution: the GEMMs are cuBLAS calls (deconvolution.py); these are the transposes between
// the NCHW bottom and its channel-major copy, col2im into the top with the bias (forward), the
// top gradient's im2col and the bias gradient (backward).  The geometry passed to the im2col.cuh
// functions is that of the Convolution from the top's shape (C = num_output, H x W = the top)
// to the bottom's (Ho x Wo = the bottom).
#include "common.cuh"
#include "im2col.cuh"

// bottom_t[c, image * hw + p] = x[image, c, p].
extern "C" __global__ void deconvolution_bottom_t(float* bottom_t, const float* x, int C, i64 hw,
                                                  i64 count) {
    GRID_STRIDE(i, count) {
        i64 p = i % hw, c = i / hw % C, image = i / hw / C;
        bottom_t[(c * (count / C / hw) + image) * hw + p] = x[i];
    }
}

// dx[image, c, p] = bottom_t[c, image * hw + p].
extern "C" __global__ void deconvolution_bottom_diff(float* dx, const float* bottom_t, int C,
                                                     i64 hw, i64 count) {
    GRID_STRIDE(i, count) {
        i64 p = i % hw, c = i / hw % C, image = i / hw / C;
        dx[i] = bottom_t[(c * (count / C / hw) + image) * hw + p];
    }
}

// top[image, co, y, x] = (bias[co] +) the sum of the column cells scattered onto (y, x), for n
// images; bias is not read when has_bias is 0.
extern "C" __global__ void deconvolution_forward(float* top, const float* col, const float* bias,
                                                 int has_bias, CONV_GEOMETRY, int n) {
    GRID_STRIDE(i, (i64)n * C * H * W) {
        float v = col2im_sum(col, i, CONV_GEOMETRY_ARGS, n);
        top[i] = has_bias ? bias[i / W / H % C] + v : v;
    }
}

// The columns of the top gradient dy (see im2col in im2col.cuh).
extern "C" __global__ void deconvolution_im2col(float* col, const float* dy, CONV_GEOMETRY, int n,
                                                int cg, i64 rows, i64 image_stride,
                                                i64 row_stride) {
    im2col(col, dy, CONV_GEOMETRY_ARGS, n, cg, rows, image_stride, row_stride);
}

// db[co] = sum over the n images and the top's hw cells of dy[., co]: one block per channel.
extern "C" __global__ void deconvolution_bias_backward(float* db, const float* dy, int C, i64 hw,
                                                       int n) {
    const float total = channel_sum(dy, n, C, hw, blockIdx.x);
    if (threadIdx.x == 0) db[blockIdx.x] = total;
}
