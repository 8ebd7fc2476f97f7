// MultinomialLogisticLoss over N rows of dim probabilities, one label per row.  Forward is two
// stages (loss.cuh): a grid whose blocks sum -log(max(p[label], 1e-20)) over their rows, then
// loss_finish adding the partial sums in a fixed order.  A label outside [0, dim)
// makes the loss and its gradient NaN (the CPU pass refuses it; a GPU pass cannot stop).
#include "loss.cuh"

#define LOG_THRESHOLD 1e-20f

extern "C" __global__ void multinomial_logistic_loss_forward(float* partials, const float* prob,
                                                             const float* label, i64 N, i64 dim) {
    float total = 0.0f;
    GRID_STRIDE(row, N) {
        const i64 k = label_code(label[row], (int)dim, 0, 0);
        total -= k == LABEL_BAD ? quiet_nan()
                                : logf(nan_max(prob[row * dim + k], LOG_THRESHOLD));
    }
    total = block_sum(total);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// dx = -loss_weight / (N max(p, 1e-20)) at each row's label, 0 elsewhere; the loss weight is
// top 0's diff, read on the device.
extern "C" __global__ void multinomial_logistic_loss_backward(float* dx, const float* prob,
                                                              const float* label,
                                                              const float* top_diff, i64 N,
                                                              i64 dim) {
    const float scale = -top_diff[0] / (float)(N > 1 ? N : 1);
    GRID_STRIDE(i, N * dim) {
        const i64 k = label_code(label[i / dim], (int)dim, 0, 0);
        if (k == LABEL_BAD) dx[i] = quiet_nan();
        else dx[i] = i % dim == k ? scale / nan_max(prob[i], LOG_THRESHOLD) : 0.0f;
    }
}
