// BatchNorm (with a folded Scale and ReLU): x is (N, C, S); channel c holds the m = N*S values
// x[(n*C + c)*S + s].  Batch statistics and backward sums run one block per channel (block_sum,
// no atomics, so every run gives the same bits); normalizing and dx are elementwise.
#include "common.cuh"

#define CHANNEL_INDEX(k, c) (((k) / S * C + (c)) * S + (k) % S)

// The batch's mean and 1/sqrt(var + eps) (var biased, two passes), and the running update:
// mean_sum = mu + f mean_sum, var_sum = correction var + f var_sum, factor = f factor + 1.
extern "C" __global__ void batch_norm_stats(float* mean, float* inv_std, float* mean_sum,
                                            float* var_sum, float* factor, const float* x,
                                            float eps, float fraction, float correction, i64 N,
                                            i64 C, i64 S) {
    __shared__ float scratch[1024];
    const i64 c = blockIdx.x, m = N * S;
    float s = 0.0f;
    BLOCK_STRIDE(k, m) s += x[CHANNEL_INDEX(k, c)];
    const float mu = block_sum(s, scratch) / (float)m;
    float q = 0.0f;
    BLOCK_STRIDE(k, m) {
        const float d = x[CHANNEL_INDEX(k, c)] - mu;
        q += d * d;
    }
    const float var = block_sum(q, scratch) / (float)m;
    if (threadIdx.x == 0) {
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

// sums[c] = sum dy and sums[C + c] = sum dy * xhat over channel c (also dbeta and dgamma when
// wanted): one block per channel.
extern "C" __global__ void batch_norm_backward_sums(float* sums, float* dgamma, float* dbeta,
                                                    const float* dy, const float* xhat,
                                                    const float* top, int want_gamma,
                                                    int want_beta, int relu, i64 N, i64 C,
                                                    i64 S) {
    __shared__ float scratch[1024];
    const i64 c = blockIdx.x;
    float s1 = 0.0f, s2 = 0.0f;
    BLOCK_STRIDE(k, N * S) {
        const i64 i = CHANNEL_INDEX(k, c);
        const float g = grad_in(dy, top, relu, i);
        s1 += g;
        s2 += g * xhat[i];
    }
    const float sum_dy = block_sum(s1, scratch);
    const float sum_dy_xhat = block_sum(s2, scratch);
    if (threadIdx.x == 0) {
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
