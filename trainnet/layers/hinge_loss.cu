// HingeLoss over N rows of dim scores, one label per row: m = max(0, 1 - t x) with t = +1 at
// the label and -1 elsewhere.  Forward keeps the margins and each row's
// label code and sums m (L1) or m^2 (L2) in a fixed order.  A label outside [0, dim) makes
// the loss and its gradient NaN (the CPU pass refuses it; a GPU pass cannot stop mid-graph).
// Forward is two stages (loss.cuh): this grid writes each block's partial sum, then
// loss_finish adds them.
#include "loss.cuh"

extern "C" __global__ void hinge_loss_forward(float* partials, float* margin, i64* code,
                                              const float* x, const float* label, i64 N,
                                              i64 dim, int l2) {
    float total = 0.0f;
    GRID_STRIDE(i, N * dim) {
        const i64 row = i / dim, j = i % dim;
        const i64 k = label_code(label[row], (int)dim, 0, 0);
        if (j == 0) code[row] = k;
        const float m = nan_max(1.0f + (j == k ? -x[i] : x[i]), 0.0f);
        margin[i] = m;
        total += k == LABEL_BAD ? quiet_nan() : (l2 ? m * m : m);
    }
    total = block_sum(total);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// dx = -t sign(m) (L1) or -2 t m (L2), times loss_weight / N; the loss weight is top 0's diff,
// read on the device.
extern "C" __global__ void hinge_loss_backward(float* dx, const float* margin, const i64* code,
                                               const float* top_diff, i64 N, i64 dim, int l2) {
    const float scale = top_diff[0] / (float)(N > 1 ? N : 1);
    GRID_STRIDE(i, N * dim) {
        const i64 k = code[i / dim];
        const float m = margin[i];
        float g = l2 ? 2.0f * m : (m > 0.0f ? 1.0f : 0.0f);
        if (i % dim == k) g = -g;
        dx[i] = k == LABEL_BAD ? quiet_nan() : g * scale;
    }
}
