// EuclideanLoss: loss = sum (a - b)^2 * inv_num / 2.  Forward is one block that keeps the
// difference for backward and sums its squares in a fixed order (deterministic).
#include "common.cuh"

extern "C" __global__ void euclidean_loss_forward(float* loss, float* diff, const float* a,
                                                  const float* b, i64 n, float inv_num) {
    __shared__ float scratch[1024];
    float total = 0.0f;
    BLOCK_STRIDE(i, n) {
        const float d = a[i] - b[i];
        diff[i] = d;
        total += d * d;
    }
    total = block_sum(total, scratch);
    if (threadIdx.x == 0) loss[0] = total * inv_num * 0.5f;
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
