// Convolution: im2col over a chunk of images, cuBLAS GEMMs (in convolution.py), and an epilogue
// that adds the bias, applies a fused ReLU and transposes the GEMM's output into the NCHW top.
// Backward: the top gradient (masked by a fused ReLU) into the GEMM layout, the bias gradient as
// row sums, and col2im as a gather per bottom element (no atomics, deterministic).
#include "common.cuh"

// The geometry every kernel here takes: bottom (C, H, W), top (Ho, Wo), kernel, pad, stride,
// dilation.
#define CONV_GEOMETRY int C, int H, int W, int Ho, int Wo, int kh, int kw, int ph, int pw, \
                      int sh, int sw, int dh, int dw

// Cell (row r = (c*kh + i)*kw + j, image, pixel p) of the columns of n NCHW images x: the
// bottom under tap (i, j) of window p, 0 in the padding.  Group g = c / cg owns rows
// [g*cg*kh*kw, (g+1)*cg*kh*kw); its rows start at g*rows in col (rows >= cg*kh*kw leaves room
// for a bias row), and the cell lies at image*image_stride + row*row_stride + p.
extern "C" __global__ void convolution_im2col(float* col, const float* x, CONV_GEOMETRY, int n,
                                              int cg, i64 rows, i64 image_stride, i64 row_stride) {
    const i64 hw = (i64)Ho * Wo, taps = (i64)kh * kw;
    GRID_STRIDE(i, (i64)C * taps * n * hw) {
        i64 p = i % hw, image = i / hw % n, r = i / hw / n;
        int j = (int)(r % kw), tap_i = (int)(r / kw % kh), c = (int)(r / taps);
        int y = (int)(p / Wo) * sh - ph + tap_i * dh, x0 = (int)(p % Wo) * sw - pw + j * dw;
        float v = (y >= 0 && y < H && x0 >= 0 && x0 < W) ? x[((image * C + c) * H + y) * W + x0]
                                                          : 0.0f;
        i64 g = c / cg, row = g * rows + (r - g * cg * taps);
        col[image * image_stride + row * row_stride + p] = v;
    }
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
    __shared__ float scratch[1024];
    const float* row = out + (i64)blockIdx.x * m;
    float s = 0.0f;
    BLOCK_STRIDE(q, m) s += row[q];
    float total = block_sum(s, scratch);
    if (threadIdx.x == 0) db[blockIdx.x] = total;
}

// dx[image, c, y, x] = the sum of the column cells (laid out as im2col writes them for the whole
// batch: row stride n * hw, image stride hw) of every tap and window that read bottom (y, x).
extern "C" __global__ void convolution_col2im(float* dx, const float* col, CONV_GEOMETRY, int n) {
    const i64 hw = (i64)Ho * Wo, m = n * hw;
    GRID_STRIDE(i, (i64)n * C * H * W) {
        int x0 = (int)(i % W), y = (int)(i / W % H), c = (int)(i / W / H % C);
        i64 image = i / W / H / C;
        float sum = 0.0f;
        for (int ti = 0; ti < kh; ++ti) {
            int oy = y + ph - ti * dh;
            if (oy < 0 || oy % sh || oy / sh >= Ho) continue;
            for (int tj = 0; tj < kw; ++tj) {
                int ox = x0 + pw - tj * dw;
                if (ox < 0 || ox % sw || ox / sw >= Wo) continue;
                i64 row = ((i64)c * kh + ti) * kw + tj;
                sum += col[row * m + image * hw + (oy / sh) * Wo + ox / sw];
            }
        }
        dx[i] = sum;
    }
}
