// Pooling: Caffe's MAX and AVE over 2-D windows of NCHW planes.  Forward runs one thread per
// top cell; backward one thread per bottom cell, gathering from the windows that cover it (no
// atomics).  Window (oh, ow) covers padded rows [oh*sh, oh*sh + kh) and columns likewise; the
// bottom sits at (ph, pw) inside, and a cell outside it (padding, or the overhang of a
// ceil-rounded last window) counts as -FLT_MAX for MAX and 0 for AVE, as in the CPU pass's
// padded copy.  Sums run in the CPU pass's order, so both passes give the same bits.
#include "common.cuh"

#define POOL_DIMS int H, int W, int Ho, int Wo, int kh, int kw, int sh, int sw, int ph, int pw

static __device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
static __device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

// MAX: the first maximum in row-major tap order (strict >, padding at -FLT_MAX) and its tap
// i*kw + j, kept as a float like the CPU pass's argmax.  A NaN spreads to the top as
// np.maximum spreads it, and leaves the argmax where it was.
template <bool KEEP>
static __device__ __forceinline__ void max_pool(float* top, float* argmax, const float* x, i64 n,
                                                POOL_DIMS) {
    const float lowest = -3.402823466e+38f;  // -FLT_MAX
    GRID_STRIDE(o, n) {
        const int ow = (int)(o % Wo), oh = (int)(o / Wo % Ho);
        const float* plane = x + o / ((i64)Ho * Wo) * H * W;
        const int h0 = oh * sh - ph, w0 = ow * sw - pw;
        float best = 0.0f;
        int arg = 0;
        for (int i = 0; i < kh; ++i) {
            for (int j = 0; j < kw; ++j) {
                const int h = h0 + i, w = w0 + j, tap = i * kw + j;
                const float v = (h >= 0 && h < H && w >= 0 && w < W) ? plane[h * W + w] : lowest;
                if (tap == 0 || v > best) {
                    best = v;
                    arg = tap;
                } else if (v != v) {
                    best = v;
                }
            }
        }
        top[o] = best;
        if (KEEP) argmax[o] = (float)arg;
    }
}

extern "C" __global__ void pooling_forward_max(float* top, float* argmax, const float* x, i64 n,
                                               POOL_DIMS) {
    max_pool<true>(top, argmax, x, n, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw);
}

// A forward-only step keeps no argmax.
extern "C" __global__ void pooling_forward_max_only(float* top, const float* x, i64 n, POOL_DIMS) {
    max_pool<false>(top, top, x, n, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw);
}

// Caffe's AVE divisor: the window clipped to the padded input H + 2p (padding counts).
static __device__ __forceinline__ float window_size(int oh, int ow, POOL_DIMS) {
    const int h0 = oh * sh - ph, w0 = ow * sw - pw;
    return (float)((imin(h0 + kh, H + ph) - h0) * (imin(w0 + kw, W + pw) - w0));
}

extern "C" __global__ void pooling_forward_ave(float* top, const float* x, i64 n, POOL_DIMS) {
    GRID_STRIDE(o, n) {
        const int ow = (int)(o % Wo), oh = (int)(o / Wo % Ho);
        const float* plane = x + o / ((i64)Ho * Wo) * H * W;
        const int h0 = oh * sh - ph, w0 = ow * sw - pw;
        float sum = 0.0f;
        for (int h = imax(h0, 0); h < imin(h0 + kh, H); ++h)
            for (int w = imax(w0, 0); w < imin(w0 + kw, W); ++w) sum += plane[h * W + w];
        top[o] = sum / window_size(oh, ow, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw);
    }
}

// The windows covering bottom cell (h, w): rows [oh0, oh1) and columns [ow0, ow1) of the top.
// They are visited from the last to the first, which is the order of increasing tap, the
// order in which the CPU pass adds them.
#define COVERING_WINDOWS(idx)                                                               \
    const int w = (int)(idx % W), h = (int)(idx / W % H);                                   \
    const i64 plane = idx / ((i64)H * W) * Ho * Wo;                                          \
    const int hp = h + ph, wp = w + pw;                                                      \
    const int oh0 = hp < kh ? 0 : (hp - kh) / sh + 1, oh1 = imin(hp / sh + 1, Ho);          \
    const int ow0 = wp < kw ? 0 : (wp - kw) / sw + 1, ow1 = imin(wp / sw + 1, Wo);

extern "C" __global__ void pooling_backward_max(float* dx, const float* dtop, const float* argmax,
                                                i64 n, POOL_DIMS) {
    GRID_STRIDE(idx, n) {
        COVERING_WINDOWS(idx)
        float g = 0.0f;
        for (int oh = oh1 - 1; oh >= oh0; --oh) {
            for (int ow = ow1 - 1; ow >= ow0; --ow) {
                const i64 o = plane + oh * Wo + ow;
                if (argmax[o] == (float)((hp - oh * sh) * kw + wp - ow * sw)) g += dtop[o];
            }
        }
        dx[idx] = g;
    }
}

extern "C" __global__ void pooling_backward_ave(float* dx, const float* dtop, i64 n, POOL_DIMS) {
    GRID_STRIDE(idx, n) {
        COVERING_WINDOWS(idx)
        float g = 0.0f;
        for (int oh = oh1 - 1; oh >= oh0; --oh)
            for (int ow = ow1 - 1; ow >= ow0; --ow)
                g += dtop[plane + oh * Wo + ow] /
                     window_size(oh, ow, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw);
        dx[idx] = g;
    }
}
