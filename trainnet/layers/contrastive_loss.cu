// ContrastiveLoss over N pairs of C features.  Forward is two stages (loss.cuh): a grid whose
// threads take pairs in turn, keeping a - b and the pair's gradient coefficient, and whose
// blocks write their partial sums of the pair losses, then loss_finish adding them in a fixed
// order.  A label is "similar" when it truncates to a nonzero int, as in Caffe.
#include "loss.cuh"

extern "C" __global__ void contrastive_loss_forward(float* partials, float* diff, float* coef,
                                                    const float* a, const float* b,
                                                    const float* y, i64 N, i64 C, float margin,
                                                    int legacy) {
    float total = 0.0f;
    GRID_STRIDE(n, N) {
        float dsq = 0.0f;
        for (i64 c = 0; c < C; ++c) {
            const i64 i = n * C + c;
            const float d = a[i] - b[i];
            diff[i] = d;
            dsq += d * d;
        }
        if (!(fabsf(y[n]) < 1.0f)) {  // similar: (int)y != 0
            total += dsq;
            coef[n] = 1.0f;
        } else if (legacy) {
            const float mdist = margin - dsq;
            total += nan_max(mdist, 0.0f);
            coef[n] = mdist > 0.0f ? -1.0f : 0.0f;
        } else {
            const float dist = sqrtf(dsq);
            const float mdist = margin - dist;
            const float m = nan_max(mdist, 0.0f);
            total += m * m;
            coef[n] = mdist > 0.0f ? -mdist / (dist + 1e-4f) : 0.0f;
        }
    }
    total = block_sum(total);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// da = coef * (a - b) * w / N and db = -da, each where its flag is set; the loss weight w is
// top 0's diff, read on the device.
extern "C" __global__ void contrastive_loss_backward(float* da, float* db, const float* diff,
                                                     const float* coef, const float* top_diff,
                                                     int has_a, int has_b, i64 N, i64 C) {
    const float alpha = top_diff[0] / (float)(N > 1 ? N : 1);
    GRID_STRIDE(i, N * C) {
        const float g = coef[i / C] * diff[i] * alpha;
        if (has_a) da[i] = g;
        if (has_b) db[i] = -g;
    }
}
