// Accuracy over axis 1 of an (outer, C, inner) blob, in one block: each thread takes rows
// (outer, inner) in turn; a counted row is a hit when at most top_k classes score >= its true
// class (ties count against, as Caffe).  The block sums hits and counts; per-class accuracy,
// when asked for, takes one such sum per class.  A counted label outside [0, C), which the CPU
// pass refuses, makes the accuracy NaN (no host can be told mid-graph).  Hits and counts are
// integers, summed exactly (block_count), so the ratio is right past 2^24 rows.
#include "classes.cuh"
#include "loss.cuh"

// 1 when class k of row r is among the top_k scores, else 0.
static __device__ __forceinline__ int hit(const float* x, i64 r, i64 k, int C, i64 inner,
                                            int top_k) {
    const i64 base = row_base(r, C, inner);
    const float truth = x[base + k * inner];
    int rank = 0;
    for (int c = 0; c < C; ++c) rank += x[base + c * inner] >= truth;
    return rank <= top_k ? 1 : 0;
}

// per_class gets n_per_class values (0: no second top; per_class is then unused).
extern "C" __global__ void accuracy_forward(float* accuracy, float* per_class, const float* x,
                                            const float* label, i64 rows, int C, i64 inner,
                                            int top_k, int has_ignore, i64 ignore,
                                            int n_per_class) {
    __shared__ float scratch[1024];
    i64 hits = 0, count = 0, bad = 0;
    BLOCK_STRIDE(r, rows) {
        const i64 k = label_code(label[r], C, has_ignore, ignore);
        if (k == LABEL_IGNORED) continue;
        count += 1;
        if (k == LABEL_BAD) bad += 1;
        else hits += hit(x, r, k, C, inner, top_k);
    }
    hits = block_count(hits, scratch);
    count = block_count(count, scratch);
    bad = block_count(bad, scratch);
    if (threadIdx.x == 0)
        accuracy[0] = bad ? quiet_nan() : count > 0 ? (float)hits / (float)count : 0.0f;
    for (int c = 0; c < n_per_class; ++c) {
        i64 class_hits = 0, class_count = 0;
        BLOCK_STRIDE(r, rows) {
            if (label_code(label[r], C, has_ignore, ignore) != c) continue;
            class_count += 1;
            class_hits += hit(x, r, c, C, inner, top_k);
        }
        class_hits = block_count(class_hits, scratch);
        class_count = block_count(class_count, scratch);
        if (threadIdx.x == 0)
            per_class[c] = (float)class_hits / (float)(class_count > 1 ? class_count : 1);
    }
}
