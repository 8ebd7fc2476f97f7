// Shared by the loss kernels (layers/loss.py on the CPU) and by Accuracy, which counts too.
//
// A loss forward is a two-stage reduction, so that it runs on every SM rather than one: stage 1
// is the layer's own kernel on a grid of P blocks (kernels/sources.py partial_blocks: fixed by
// the shapes, never by the device), each thread taking items in grid-stride order and each
// block writing its partial loss (and count) with write_partial_loss; stage 2 is loss.cu's
// loss_finish, one block adding the P partials in a fixed order.  So a loss has the same bits on every run.
#pragma once
#include "classes.cuh"
#include "common.cuh"

// Block-wide exact sum of one count per thread (every thread gets the total).  A float sum is
// exact only to 2^24, so the counts go through block_sum in two parts that stay exact: the low
// 12 bits (a sum below 1024 * 4096 = 2^22) and the rest (a sum below 2^24 while the total is
// below 2^36).
__device__ __forceinline__ i64 block_count(i64 c) {
    const float low = block_sum((float)(c & 4095));
    const float high = block_sum((float)(c >> 12));
    return (i64)high * 4096 + (i64)low;
}

// The end of stage 1: partials[block] = the block's loss; counts[block] = its count, exactly.
__device__ __forceinline__ void write_partial_loss(float* partials, i64* counts, float total,
                                                   i64 count) {
    total = block_sum(total);
    count = block_count(count);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = total;
        counts[blockIdx.x] = count;
    }
}

// Stage 1 of a softmax loss (SoftmaxWithLoss, InfogainLoss): each thread takes rows in
// grid-stride order, puts their softmax in `prob` and their label codes in `code` for backward,
// and adds term(r, base, k), the loss of row r (first element `base`) with counted label k; a
// bad label adds NaN.  Then the block writes its partial loss and count.
template <typename Term>
__device__ __forceinline__ void softmax_loss_rows(float* partials, i64* counts, float* prob,
                                                  i64* code, const float* x, const float* label,
                                                  i64 rows, int C, i64 inner, int has_ignore,
                                                  i64 ignore, Term term) {
    float total = 0.0f;
    i64 count = 0;
    GRID_STRIDE(r, rows) {
        const i64 base = row_base(r, C, inner);
        softmax_row(prob, x, base, C, inner);
        const i64 k = label_code(label[r], C, has_ignore, ignore);
        code[r] = k;
        if (k == LABEL_IGNORED) continue;
        count += 1;
        total -= k == LABEL_BAD ? quiet_nan() : term(r, base, k);
    }
    write_partial_loss(partials, counts, total, count);
}
