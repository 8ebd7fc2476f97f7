// Shared by the loss kernels that normalize by a count (layers/loss.py on the CPU).
#pragma once
#include "common.cuh"

// The end of a one-block loss forward: sum every thread's loss and counted positions in a fixed
// order, then thread 0 writes loss / norm and the normalizer backward reads.  fixed_norm is the
// normalizer for FULL, BATCH_SIZE and NONE; 0 for VALID (the count, at least 1).  `scratch`
// holds blockDim.x floats.
__device__ __forceinline__ void write_normalized_loss(float* loss, float* norm_out, float total,
                                                      float count, float fixed_norm,
                                                      float* scratch) {
    total = block_sum(total, scratch);
    count = block_sum(count, scratch);
    if (threadIdx.x == 0) {
        const float norm = fixed_norm > 0.0f ? fixed_norm : fmaxf(count, 1.0f);
        loss[0] = total / norm;
        norm_out[0] = norm;
    }
}
