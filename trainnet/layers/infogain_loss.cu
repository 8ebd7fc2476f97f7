// InfogainLoss over axis 1 of an (outer, K, inner) blob of scores, one row (outer, inner) per
// thread, with a K x K matrix H.  Forward is two stages (loss.cuh): a grid whose threads take
// rows in turn (softmax into `prob`, the label's -sum_k H[label, k] log(max(p_k, 1e-20))) and
// whose blocks write their partial loss and count, then loss_finish.  It keeps for backward
// the probabilities, each row's label code, each counted row's sum of H[label] and the
// normalizer.  A counted label outside [0, K) turns the loss and its gradient into NaN (the
// CPU pass refuses it).
#include "classes.cuh"
#include "loss.cuh"

extern "C" __global__ void infogain_loss_forward(float* partials, i64* counts, float* prob,
                                                 i64* code, float* hsum, const float* x,
                                                 const float* label, const float* H, i64 rows,
                                                 int K, i64 inner, int has_ignore, i64 ignore) {
    softmax_loss_rows(partials, counts, prob, code, x, label, rows, K, inner, has_ignore, ignore,
                      [&](i64 r, i64 base, i64 k) {
                          float sum = 0.0f, gain = 0.0f;
                          for (int c = 0; c < K; ++c) {
                              const float h = H[k * K + c];
                              sum += h;
                              gain += h * logf(nan_max(prob[base + c * inner], 1e-20f));
                          }
                          hsum[r] = sum;
                          return gain;
                      });
}

// dx = (p * sum_k H[label, k] - H[label, c]) * loss_weight / norm, 0 where the label is
// ignored.  The loss weight is top 0's diff, read on the device.
extern "C" __global__ void infogain_loss_backward(float* dx, const float* prob, const i64* code,
                                                  const float* hsum, const float* norm,
                                                  const float* H, const float* top_diff, i64 n,
                                                  int K, i64 inner) {
    const float scale = top_diff[0] / norm[0];
    GRID_STRIDE(i, n) {
        const i64 t = i / inner;
        const int c = (int)(t % K);
        const i64 r = t / K * inner + i % inner;
        const i64 k = code[r];
        if (k == LABEL_BAD) dx[i] = quiet_nan();
        else if (k == LABEL_IGNORED) dx[i] = 0.0f;
        else dx[i] = (prob[i] * hsum[r] - H[k * K + c]) * scale;
    }
}
