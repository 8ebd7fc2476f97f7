// LRN: one thread per element of an NCHW blob, summing over its window: rc channels either side
// (ACROSS_CHANNELS) or rs rows and columns either side (WITHIN_CHANNEL), clipped to the blob.
// The window is visited channels, then rows, then columns, as lrn.py's taps add.
#include "common.cuh"

// scale = k + alpha_over_div * sum of x^2 over the window; y = x * scale^-beta.  The scale is
// written only when keep (a forward-only step has no buffer for it).
extern "C" __global__ void lrn_forward(float* top, float* scale, const float* x, int C, int H,
                                       int W, int rc, int rs, float k, float alpha_over_div,
                                       float beta, int keep, i64 n) {
    GRID_STRIDE(i, n) {
        const int w = (int)(i % W), h = (int)(i / W % H), c = (int)(i / ((i64)W * H) % C);
        const i64 image = i - ((i64)c * H + h) * W - w;  // offset of element (n, 0, 0, 0)
        float sum = 0.0f;
        for (int c2 = c - rc; c2 <= c + rc; ++c2)
            for (int h2 = h - rs; h2 <= h + rs; ++h2)
                for (int w2 = w - rs; w2 <= w + rs; ++w2) {
                    if (c2 < 0 || c2 >= C || h2 < 0 || h2 >= H || w2 < 0 || w2 >= W) continue;
                    const float v = x[image + ((i64)c2 * H + h2) * W + w2];
                    sum += v * v;
                }
        const float s = k + alpha_over_div * sum;
        if (keep) scale[i] = s;
        top[i] = powf(s, -beta) * x[i];
    }
}

// dx = dy * scale^-beta - cache * x * (sum over the window of dy * y / scale), cache being
// 2 alpha beta / div: the windows that hold an element are the ones centred in its own window.
extern "C" __global__ void lrn_backward(float* dx, const float* dy, const float* top,
                                        const float* scale, const float* x, int C, int H, int W,
                                        int rc, int rs, float cache, float beta, i64 n) {
    GRID_STRIDE(i, n) {
        const int w = (int)(i % W), h = (int)(i / W % H), c = (int)(i / ((i64)W * H) % C);
        const i64 image = i - ((i64)c * H + h) * W - w;
        float sum = 0.0f;
        for (int c2 = c - rc; c2 <= c + rc; ++c2)
            for (int h2 = h - rs; h2 <= h + rs; ++h2)
                for (int w2 = w - rs; w2 <= w + rs; ++w2) {
                    if (c2 < 0 || c2 >= C || h2 < 0 || h2 >= H || w2 < 0 || w2 >= W) continue;
                    const i64 j = image + ((i64)c2 * H + h2) * W + w2;
                    sum += dy[j] * top[j] / scale[j];
                }
        dx[i] = x[i] * sum * -cache + powf(scale[i], -beta) * dy[i];
    }
}
