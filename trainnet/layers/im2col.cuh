// im2col and col2im for 2-D convolutions, shared by Convolution (forward: im2col, backward:
// col2im) and Deconvolution (forward: col2im, backward: im2col).  Both are per element: im2col
// reads one bottom cell per column cell; col2im gathers, for one bottom cell, the column cells
// of every tap and window that read it (no atomics, deterministic).
#pragma once
#include "common.cuh"

// The geometry every kernel here takes: bottom (C, H, W), top (Ho, Wo), kernel, pad, stride,
// dilation.
#define CONV_GEOMETRY int C, int H, int W, int Ho, int Wo, int kh, int kw, int ph, int pw, \
                      int sh, int sw, int dh, int dw
#define CONV_GEOMETRY_ARGS C, H, W, Ho, Wo, kh, kw, ph, pw, sh, sw, dh, dw

// Cell (row r = (c*kh + i)*kw + j, image, pixel p) of the columns of n NCHW images x: the
// bottom under tap (i, j) of window p, 0 in the padding.  Group g = c / cg owns rows
// [g*cg*kh*kw, (g+1)*cg*kh*kw); its rows start at g*rows in col (rows >= cg*kh*kw leaves room
// for a bias row), and the cell lies at image*image_stride + row*row_stride + p.
__device__ __forceinline__ void im2col(float* col, const float* x, CONV_GEOMETRY, int n, int cg,
                                       i64 rows, i64 image_stride, i64 row_stride) {
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

// The sum of the column cells that read bottom cell i of n NCHW images, the columns laid out as
// im2col writes them for the whole batch (row stride n * hw, image stride hw).
__device__ __forceinline__ float col2im_sum(const float* col, i64 i, CONV_GEOMETRY, int n) {
    const i64 hw = (i64)Ho * Wo, m = n * hw;
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
    return sum;
}
