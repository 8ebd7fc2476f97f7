// Shared by the loss kernels that normalize by a count (layers/loss.py on the CPU) and by
// Accuracy, which counts too.
#pragma once
#include "classes.cuh"
#include "common.cuh"

// Block-wide exact sum of one count per thread (each below 2^26; every thread gets the total).
// A float sum is exact only to 2^24, so the counts go through block_sum in two parts that stay
// exact: the low 12 bits (a sum below 1024 * 4096 = 2^22) and the rest (a sum below 2^24 for
// fewer than 2^36 positions).  `scratch` holds blockDim.x floats.
__device__ __forceinline__ i64 block_count(i64 c, float* scratch) {
    const float low = block_sum((float)(c & 4095), scratch);
    const float high = block_sum((float)(c >> 12), scratch);
    return (i64)high * 4096 + (i64)low;
}

// The end of a one-block loss forward: sum every thread's loss in a fixed order and count the
// positions exactly, then thread 0 writes loss / norm and the normalizer backward reads.
// fixed_norm is the normalizer for FULL, BATCH_SIZE and NONE; 0 for VALID (the count, at least
// 1).  `scratch` holds blockDim.x floats.
__device__ __forceinline__ void write_normalized_loss(float* loss, float* norm_out, float total,
                                                      i64 count, float fixed_norm,
                                                      float* scratch) {
    total = block_sum(total, scratch);
    count = block_count(count, scratch);
    if (threadIdx.x == 0) {
        const float norm = fixed_norm > 0.0f ? fixed_norm : (float)(count > 1 ? count : 1);
        loss[0] = total / norm;
        norm_out[0] = norm;
    }
}

// The body of a softmax loss's one-block forward (SoftmaxWithLoss, InfogainLoss): each thread
// takes rows in turn, puts their softmax in `prob` and their label codes in `code` for backward,
// and adds term(r, base, k), the loss of row r (first element `base`) with counted label k;
// a bad label adds NaN.  Then the block writes loss / norm as write_normalized_loss does.
template <typename Term>
__device__ __forceinline__ void softmax_loss_rows(float* loss, float* prob, i64* code,
                                                  float* norm_out, const float* x,
                                                  const float* label, i64 rows, int C, i64 inner,
                                                  int has_ignore, i64 ignore, float fixed_norm,
                                                  float* scratch, Term term) {
    float total = 0.0f;
    i64 count = 0;
    BLOCK_STRIDE(r, rows) {
        const i64 base = row_base(r, C, inner);
        softmax_row(prob, x, base, C, inner);
        const i64 k = label_code(label[r], C, has_ignore, ignore);
        code[r] = k;
        if (k == LABEL_IGNORED) continue;
        count += 1;
        total -= k == LABEL_BAD ? quiet_nan() : term(r, base, k);
    }
    write_normalized_loss(loss, norm_out, total, count, fixed_norm, scratch);
}
