// Depthwise convolution (group == channels == num_output): one kh x kw filter per channel,
// computed directly, without columns.  Forward: one thread per top cell (bias and fused ReLU in
// the same pass).  Backward: a fused ReLU's mask of the top gradient, in place; the bottom
// gradient as one thread per bottom cell gathering from the windows that cover it; the weight
// and bias gradients as one block per (channel, tap) and per channel, each summing over the
// batch and the top's cells with block_sum (deterministic: no atomics).  3x3 kernels take a copy
// of each loop unrolled at compile time (KH = KW = 3); 0 means the runtime kernel size.
#include "common.cuh"
#include "im2col.cuh"

// The top cell (y0 + i*dh, x0 + j*dw window origin) of one channel: sum of w * x over the taps
// inside the bottom.  x and w point at the channel's plane and filter.
template <int KH, int KW>
__device__ __forceinline__ float depthwise_window(const float* x, const float* w, int y0, int x0,
                                                  int H, int W, int kh, int kw, int dh, int dw) {
    const int rows = KH ? KH : kh, cols = KW ? KW : kw;
    float sum = 0.0f;
    for (int i = 0; i < rows; ++i) {
        int y = y0 + i * dh;
        if (y < 0 || y >= H) continue;
        for (int j = 0; j < cols; ++j) {
            int xj = x0 + j * dw;
            if (xj >= 0 && xj < W) sum += w[i * cols + j] * x[(i64)y * W + xj];
        }
    }
    return sum;
}

// The bottom gradient at (y, x) of one channel: sum of w * dy over the taps and windows that
// read it.  dy and w point at the channel's top-gradient plane and filter.
template <int KH, int KW>
__device__ __forceinline__ float depthwise_gather(const float* dy, const float* w, int y, int x,
                                                  int Ho, int Wo, int kh, int kw, int ph, int pw,
                                                  int sh, int sw, int dh, int dw) {
    const int rows = KH ? KH : kh, cols = KW ? KW : kw;
    float sum = 0.0f;
    for (int i = 0; i < rows; ++i) {
        int oy = y + ph - i * dh;
        if (oy < 0 || oy % sh || oy / sh >= Ho) continue;
        for (int j = 0; j < cols; ++j) {
            int ox = x + pw - j * dw;
            if (ox < 0 || ox % sw || ox / sw >= Wo) continue;
            sum += w[i * cols + j] * dy[(i64)(oy / sh) * Wo + ox / sw];
        }
    }
    return sum;
}

// top[image, c, oy, ox] = the window's sum (+ bias[c]) (then max(., 0)) for n images; bias is
// not read when has_bias is 0.
extern "C" __global__ void depthwise_forward(float* top, const float* x, const float* w,
                                             const float* bias, int has_bias, int relu,
                                             CONV_GEOMETRY, int n) {
    const bool k3 = kh == 3 && kw == 3;
    GRID_STRIDE(i, (i64)n * C * Ho * Wo) {
        int ox = (int)(i % Wo), oy = (int)(i / Wo % Ho);
        i64 plane = i / Wo / Ho;  // image * C + c
        int c = (int)(plane % C);
        const float* xc = x + plane * H * W;
        const float* wc = w + (i64)c * kh * kw;
        int y0 = oy * sh - ph, x0 = ox * sw - pw;
        float v = k3 ? depthwise_window<3, 3>(xc, wc, y0, x0, H, W, kh, kw, dh, dw)
                     : depthwise_window<0, 0>(xc, wc, y0, x0, H, W, kh, kw, dh, dw);
        if (has_bias) v += bias[c];
        top[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

// dy = 0 where the (post-ReLU) top is not positive: the backward of a fused ReLU, in place.
extern "C" __global__ void depthwise_relu_backward(float* dy, const float* top, i64 count) {
    GRID_STRIDE(i, count) {
        if (!(top[i] > 0.0f)) dy[i] = 0.0f;
    }
}

// dx[image, c, y, x] for n images.
extern "C" __global__ void depthwise_backward_data(float* dx, const float* dy, const float* w,
                                                   CONV_GEOMETRY, int n) {
    const bool k3 = kh == 3 && kw == 3;
    GRID_STRIDE(i, (i64)n * C * H * W) {
        int x = (int)(i % W), y = (int)(i / W % H);
        i64 plane = i / W / H;
        int c = (int)(plane % C);
        const float* dyc = dy + plane * Ho * Wo;
        const float* wc = w + (i64)c * kh * kw;
        dx[i] = k3 ? depthwise_gather<3, 3>(dyc, wc, y, x, Ho, Wo, kh, kw, ph, pw, sh, sw, dh, dw)
                   : depthwise_gather<0, 0>(dyc, wc, y, x, Ho, Wo, kh, kw, ph, pw, sh, sw, dh, dw);
    }
}

// dw[c, i, j] = sum over images and top cells of dy * the bottom under tap (i, j): one block per
// (channel, tap), blockIdx.x = c * kh * kw + i * kw + j.
extern "C" __global__ void depthwise_backward_weight(float* dweight, const float* dy,
                                                     const float* x, CONV_GEOMETRY, int n) {
    const int taps = kh * kw, c = (int)(blockIdx.x / taps), t = (int)(blockIdx.x % taps);
    const int y_off = (t / kw) * dh - ph, x_off = (t % kw) * dw - pw;
    const i64 hw = (i64)Ho * Wo;
    float s = 0.0f;
    BLOCK_STRIDE(q, n * hw) {
        i64 image = q / hw, p = q % hw;
        int y = (int)(p / Wo) * sh + y_off, xq = (int)(p % Wo) * sw + x_off;
        if (y >= 0 && y < H && xq >= 0 && xq < W) {
            i64 plane = image * C + c;
            s += dy[plane * hw + p] * x[(plane * H + y) * W + xq];
        }
    }
    float total = block_sum(s);
    if (threadIdx.x == 0) dweight[blockIdx.x] = total;
}

// db[c] = sum over the n images and the top cells of dy[., c]: one block per channel.
extern "C" __global__ void depthwise_backward_bias(float* db, const float* dy, int C, i64 hw,
                                                   int n) {
    const float total = channel_sum(dy, n, C, hw, blockIdx.x);
    if (threadIdx.x == 0) db[blockIdx.x] = total;
}
