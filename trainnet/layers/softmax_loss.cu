// SoftmaxWithLoss over axis 1 of an (outer, C, inner) blob, one row (outer, inner) per thread.
// Forward is two stages (loss.cuh): a grid whose threads take rows in turn (softmax into
// `prob`, the label's -log(max(p, FLT_MIN))) and whose blocks write their partial loss and
// count, then loss_finish.  It keeps for backward the probabilities, each row's label code and
// the normalizer.  A counted label outside [0, C), which the CPU pass refuses, turns the loss
// and its gradient into NaN here (no host can be told mid-graph).
#include "classes.cuh"
#include "loss.cuh"

extern "C" __global__ void softmax_loss_forward(float* partials, i64* counts, float* prob,
                                                i64* code, const float* x, const float* label,
                                                i64 rows, int C, i64 inner, int has_ignore,
                                                i64 ignore) {
    softmax_loss_rows(partials, counts, prob, code, x, label, rows, C, inner, has_ignore, ignore,
                      [&](i64 r, i64 base, i64 k) {
                          return logf(nan_max(prob[base + k * inner], 1.175494351e-38f));
                      });
}

// dx = (p - onehot(label)) * loss_weight / norm, 0 where the label is ignored.  The loss weight
// is top 0's diff, read on the device.
extern "C" __global__ void softmax_loss_backward(float* dx, const float* prob, const i64* code,
                                                 const float* norm, const float* top_diff, i64 n,
                                                 int C, i64 inner) {
    const float scale = top_diff[0] / norm[0];
    GRID_STRIDE(i, n) {
        const i64 t = i / inner;
        const int c = (int)(t % C);
        const i64 k = code[t / C * inner + i % inner];
        if (k == LABEL_BAD) dx[i] = quiet_nan();
        else if (k == LABEL_IGNORED) dx[i] = 0.0f;
        else dx[i] = (prob[i] - (c == k ? 1.0f : 0.0f)) * scale;
    }
}
