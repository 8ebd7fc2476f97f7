// EuclideanLoss: loss = sum (a - b)^2 / num / 2.  Forward is two stages (loss.cuh): a grid
// that keeps the difference for backward and writes each block's sum of squares, then
// loss_finish adding them in a fixed order (deterministic).
#include "loss.cuh"

extern "C" __global__ void euclidean_loss_forward(float* partials, float* diff, const float* a,
                                                  const float* b, i64 n) {
    float total = 0.0f;
    GRID_STRIDE(i, n) {
        const float d = a[i] - b[i];
        diff[i] = d;
        total += d * d;
    }
    total = block_sum(total);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// da = diff * w * inv_num, db = -diff * w * inv_num, each where its flag is set; the loss
// weight w is top 0's diff, read on the device.
extern "C" __global__ void euclidean_loss_backward(float* da, float* db, const float* diff,
                                                   const float* top_diff, int has_a, int has_b,
                                                   i64 n, float inv_num) {
    const float scale = top_diff[0] * inv_num;
    GRID_STRIDE(i, n) {
        const float g = diff[i] * scale;
        if (has_a) da[i] = g;
        if (has_b) db[i] = -g;
    }
}
