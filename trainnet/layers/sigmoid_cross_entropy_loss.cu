// SigmoidCrossEntropyLoss over n scores x and targets t.  Forward is two stages (loss.cuh): a
// grid whose blocks sum x (t - [x >= 0]) - log(1 + exp(-|x|)) and count the counted positions,
// then loss_finish, which keeps the normalizer for backward.  A position is ignored when its
// target, truncated to an integer as Caffe does, equals ignore_label.
#include "loss.cuh"

__device__ __forceinline__ bool target_ignored(float t, int has_ignore, i64 ignore) {
    return has_ignore && fabsf(t) < 9.2e18f && (i64)t == ignore;
}

extern "C" __global__ void sigmoid_cross_entropy_loss_forward(float* partials, i64* counts,
                                                              const float* x, const float* t,
                                                              i64 n, int has_ignore, i64 ignore) {
    float total = 0.0f;
    i64 count = 0;
    GRID_STRIDE(i, n) {
        if (target_ignored(t[i], has_ignore, ignore)) continue;
        const float v = x[i];
        total -= v * (t[i] - (v >= 0.0f ? 1.0f : 0.0f)) - log1pf(expf(-fabsf(v)));
        count += 1;
    }
    write_partial_loss(partials, counts, total, count);
}

// dx = (sigmoid(x) - t) * loss_weight / norm, 0 where the target is ignored; the loss weight is
// top 0's diff, read on the device.  sigmoid(x) = 0.5 tanh(x / 2) + 0.5, as Caffe's Sigmoid.
extern "C" __global__ void sigmoid_cross_entropy_loss_backward(float* dx, const float* x,
                                                               const float* t, const float* norm,
                                                               const float* top_diff, i64 n,
                                                               int has_ignore, i64 ignore) {
    const float scale = top_diff[0] / norm[0];
    GRID_STRIDE(i, n) {
        const float sig = 0.5f * tanhf(0.5f * x[i]) + 0.5f;
        dx[i] = target_ignored(t[i], has_ignore, ignore) ? 0.0f : (sig - t[i]) * scale;
    }
}
