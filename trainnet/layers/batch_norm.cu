// BatchNorm (with a folded Scale and ReLU): x is (N, C, S); channel c holds the m = N*S values
// x[(n*C + c)*S + s].  Batch statistics and backward sums are two-stage reductions with no
// atomics, so every run gives the same bits: a grid of C * parts blocks, block b summing part
// b % parts (a contiguous range, part_range) of channel b / parts into partials[2b], [2b + 1];
// then one thread per channel adding its parts in order.  Normalizing and dx are elementwise.
#include "common.cuh"

#define CHANNEL_INDEX(k, c) (((k) / S * C + (c)) * S + (k) % S)

// Part q of `parts` of a channel's m values: [begin, end), the same in both stages.
static __device__ __forceinline__ void part_range(i64 m, i64 parts, i64 q, i64* begin, i64* end) {
    *begin = m * q / parts;
    *end = m * (q + 1) / parts;
}

// Stage 1 of the statistics: each block's sum of its part of channel blockIdx.x / parts and
// the sum of squared deviations from the part's own mean (two passes over the part).
extern "C" __global__ void batch_norm_stats_partials(float* partials, const float* x, i64 N,
                                                     i64 C, i64 S, i64 parts) {
    const i64 c = blockIdx.x / parts;
    i64 begin, end;
    part_range(N * S, parts, blockIdx.x % parts, &begin, &end);
    float s = 0.0f;
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x) s += x[CHANNEL_INDEX(k, c)];
    const float sum = block_sum(s);
    const float mean = end > begin ? sum / (float)(end - begin) : 0.0f;
    float q = 0.0f;
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x) {
        const float d = x[CHANNEL_INDEX(k, c)] - mean;
        q += d * d;
    }
    const float m2 = block_sum(q);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = sum;
        partials[2 * blockIdx.x + 1] = m2;
    }
}

// Stage 2, one thread per channel: the batch's mean and 1/sqrt(var + eps) (var biased; the
// parts' squared deviations combined as Chan et al.'s parallel variance), and the running
// update: mean_sum = mu + f mean_sum, var_sum = correction var + f var_sum, factor = f factor + 1.
extern "C" __global__ void batch_norm_stats(float* mean, float* inv_std, float* mean_sum,
                                            float* var_sum, float* factor,
                                            const float* partials, float eps, float fraction,
                                            float correction, i64 N, i64 C, i64 S, i64 parts) {
    const i64 m = N * S;
    GRID_STRIDE(c, C) {
        const float* part = partials + 2 * c * parts;
        float total = 0.0f;
        for (i64 q = 0; q < parts; ++q) total += part[2 * q];
        const float mu = total / (float)m;
        float m2 = 0.0f;
        for (i64 q = 0; q < parts; ++q) {
            i64 begin, end;
            part_range(m, parts, q, &begin, &end);
            const float count = (float)(end - begin);
            const float d = (count > 0.0f ? part[2 * q] / count : mu) - mu;
            m2 += part[2 * q + 1] + count * d * d;
        }
        const float var = m2 / (float)m;
        mean[c] = mu;
        inv_std[c] = 1.0f / sqrtf(var + eps);
        mean_sum[c] = mean_sum[c] * fraction + mu;
        var_sum[c] = var_sum[c] * fraction + var * correction;
        if (c == 0) factor[0] = factor[0] * fraction + 1.0f;
    }
}

// Channel c's mean and 1/sqrt(var + eps): the batch's, as batch_norm_stats wrote them, or the
// stored ones, mean_sum / s and var_sum / s (s = factor[0]; 0 when s is 0), worked out here so
// that a pass with stored statistics (inference) is a single kernel.
struct Stats {
    const float *mean, *inv_std, *mean_sum, *var_sum, *factor;
    float eps;
    int stored;
};

static __device__ __forceinline__ void channel_stats(const Stats& st, i64 c, float* mu,
                                                     float* inv_std) {
    if (!st.stored) {
        *mu = st.mean[c];
        *inv_std = st.inv_std[c];
        return;
    }
    const float s = st.factor[0];
    const float k = s == 0.0f ? 0.0f : 1.0f / s;
    *mu = st.mean_sum[c] * k;
    *inv_std = 1.0f / sqrtf(st.var_sum[c] * k + st.eps);
}

// y = relu(gamma * xhat + beta) with xhat = (x - mean) inv_std, each part as its flag says;
// xhat is kept for backward when keep_xhat.  y may be x (in place).
extern "C" __global__ void batch_norm_forward(float* y, float* xhat, const float* x,
                                              const float* mean, const float* inv_std,
                                              const float* mean_sum, const float* var_sum,
                                              const float* factor, float eps, int stored,
                                              const float* gamma, const float* beta,
                                              int keep_xhat, int has_gamma, int has_beta,
                                              int relu, i64 C, i64 S, i64 n) {
    const Stats st = {mean, inv_std, mean_sum, var_sum, factor, eps, stored};
    GRID_STRIDE(i, n) {
        const i64 c = i / S % C;
        float mu, is;
        channel_stats(st, c, &mu, &is);
        float v = (x[i] - mu) * is;
        if (keep_xhat) xhat[i] = v;
        if (has_gamma) v *= gamma[c];
        if (has_beta) v += beta[c];
        if (relu && v < 0.0f) v = 0.0f;
        y[i] = v;
    }
}

// The gradient the normalization sees: dy, or 0 where a fused ReLU cut it (its top is not > 0).
static __device__ __forceinline__ float grad_in(const float* dy, const float* top, int relu,
                                                i64 i) {
    return relu && !(top[i] > 0.0f) ? 0.0f : dy[i];
}

// Stage 1 of backward's sums: each block's sum of dy and of dy * xhat over its part of channel
// blockIdx.x / parts.
extern "C" __global__ void batch_norm_sums_partials(float* partials, const float* dy,
                                                    const float* xhat, const float* top, int relu,
                                                    i64 N, i64 C, i64 S, i64 parts) {
    const i64 c = blockIdx.x / parts;
    i64 begin, end;
    part_range(N * S, parts, blockIdx.x % parts, &begin, &end);
    float s1 = 0.0f, s2 = 0.0f;
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x) {
        const i64 i = CHANNEL_INDEX(k, c);
        const float g = grad_in(dy, top, relu, i);
        s1 += g;
        s2 += g * xhat[i];
    }
    const float sum_dy = block_sum(s1);
    const float sum_dy_xhat = block_sum(s2);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = sum_dy;
        partials[2 * blockIdx.x + 1] = sum_dy_xhat;
    }
}

// Stage 2, one thread per channel: sums[c] = sum dy and sums[C + c] = sum dy * xhat over
// channel c, its parts added in order (also dbeta and dgamma when wanted).
extern "C" __global__ void batch_norm_backward_sums(float* sums, float* dgamma, float* dbeta,
                                                    const float* partials, int want_gamma,
                                                    int want_beta, i64 C, i64 parts) {
    GRID_STRIDE(c, C) {
        const float* part = partials + 2 * c * parts;
        float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
        for (i64 q = 0; q < parts; ++q) {
            sum_dy += part[2 * q];
            sum_dy_xhat += part[2 * q + 1];
        }
        sums[c] = sum_dy;
        sums[C + c] = sum_dy_xhat;
        if (want_gamma) dgamma[c] = sum_dy_xhat;
        if (want_beta) dbeta[c] = sum_dy;
    }
}

// dx = gamma inv_std (dy - mean(dy) - xhat mean(dy xhat)) with batch statistics, or
// gamma inv_std dy with the stored ones.  dx may be dy (in place).
extern "C" __global__ void batch_norm_backward(float* dx, const float* dy, const float* xhat,
                                               const float* top, const float* sums,
                                               const float* mean, const float* inv_std,
                                               const float* mean_sum, const float* var_sum,
                                               const float* factor, float eps, int stored,
                                               const float* gamma, int has_gamma, int relu,
                                               float m, i64 C, i64 S, i64 n) {
    const Stats st = {mean, inv_std, mean_sum, var_sum, factor, eps, stored};
    GRID_STRIDE(i, n) {
        const i64 c = i / S % C;
        float mu, is;
        channel_stats(st, c, &mu, &is);
        float g = grad_in(dy, top, relu, i);
        if (!stored) g = g - sums[c] / m - xhat[i] * (sums[C + c] / m);
        const float coef = has_gamma ? is * gamma[c] : is;
        dx[i] = g * coef;
    }
}
