// The second stage of every loss forward (layers/loss.cuh describes the first), launched by
// loss.py's finish_loss_gpu.
#include "loss.cuh"

// Stage 2, one block: total = the sum of the `blocks` partials (a fixed order), then
// loss[0] = total / norm * scale and norm_out[0] = norm, which backward reads.  norm is
// fixed_norm (FULL, BATCH_SIZE, NONE, or a layer's own) or, when that is 0 (VALID), the sum of
// the counts, at least 1; counts is read only then.
extern "C" __global__ void loss_finish(float* loss, float* norm_out, const float* partials,
                                       const i64* counts, float fixed_norm, float scale,
                                       i64 blocks) {
    const bool counted = !(fixed_norm > 0.0f);
    float s = 0.0f;
    i64 c = 0;
    BLOCK_STRIDE(b, blocks) {
        s += partials[b];
        if (counted) c += counts[b];
    }
    const float total = block_sum(s);
    const i64 count = block_count(c);
    if (threadIdx.x == 0) {
        const float norm = counted ? (float)(count > 1 ? count : 1) : fixed_norm;
        loss[0] = total / norm * scale;
        norm_out[0] = norm;
    }
}
