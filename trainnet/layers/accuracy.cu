// Accuracy over axis 1 of an (outer, C, inner) blob: a counted row (outer, inner) is a hit when
// at most top_k classes score >= its true class (ties count against, as Caffe).  Two stages:
// accuracy_counts, a grid whose threads take rows in grid-stride order and whose blocks write
// their counts, and accuracy_finish, one block adding them.  Hits and counts are integers,
// summed exactly (block_count, then int64), so the ratio is right past 2^24 rows.  A counted
// label outside [0, C), which the CPU pass refuses, makes the accuracy NaN (no host can be told
// mid-graph).
#include "classes.cuh"
#include "loss.cuh"

// Each block's row of counts: hits, counted, bad labels, then hits and counted of each class.
#define ACCURACY_COLUMNS(n_per_class) (3 + 2 * (i64)(n_per_class))

// 1 when class k of row r is among the top_k scores, else 0.
static __device__ __forceinline__ int hit(const float* x, i64 r, i64 k, int C, i64 inner,
                                            int top_k) {
    const i64 base = row_base(r, C, inner);
    const float truth = x[base + k * inner];
    int rank = 0;
    for (int c = 0; c < C; ++c) rank += x[base + c * inner] >= truth;
    return rank <= top_k ? 1 : 0;
}

// counts[block] = the block's hits, counted rows and bad labels, then, for each of the
// n_per_class classes (0: no second top), its hits and counted rows.
extern "C" __global__ void accuracy_counts(i64* counts, const float* x, const float* label,
                                           i64 rows, int C, i64 inner, int top_k, int has_ignore,
                                           i64 ignore, int n_per_class) {
    i64* out = counts + blockIdx.x * ACCURACY_COLUMNS(n_per_class);
    i64 hits = 0, count = 0, bad = 0;
    GRID_STRIDE(r, rows) {
        const i64 k = label_code(label[r], C, has_ignore, ignore);
        if (k == LABEL_IGNORED) continue;
        count += 1;
        if (k == LABEL_BAD) bad += 1;
        else hits += hit(x, r, k, C, inner, top_k);
    }
    hits = block_count(hits);
    count = block_count(count);
    bad = block_count(bad);
    if (threadIdx.x == 0) {
        out[0] = hits;
        out[1] = count;
        out[2] = bad;
    }
    for (int c = 0; c < n_per_class; ++c) {
        i64 class_hits = 0, class_count = 0;
        GRID_STRIDE(r, rows) {
            if (label_code(label[r], C, has_ignore, ignore) != c) continue;
            class_count += 1;
            class_hits += hit(x, r, c, C, inner, top_k);
        }
        class_hits = block_count(class_hits);
        class_count = block_count(class_count);
        if (threadIdx.x == 0) {
            out[3 + 2 * c] = class_hits;
            out[4 + 2 * c] = class_count;
        }
    }
}

// One block: column j of counts summed over the blocks in order, in int64 (exact).
static __device__ __forceinline__ i64 column_total(const i64* counts, i64 blocks, i64 columns,
                                                   i64 j) {
    i64 total = 0;
    for (i64 b = 0; b < blocks; ++b) total += counts[b * columns + j];
    return total;
}

// accuracy[0] = hits / counted (NaN after a bad label, 0 with nothing counted) and, when
// n_per_class > 0, per_class[c] = the class's hits / max(its count, 1); one thread per value.
extern "C" __global__ void accuracy_finish(float* accuracy, float* per_class, const i64* counts,
                                           i64 blocks, int n_per_class) {
    const i64 columns = ACCURACY_COLUMNS(n_per_class);
    if (threadIdx.x == 0) {
        const i64 hits = column_total(counts, blocks, columns, 0);
        const i64 count = column_total(counts, blocks, columns, 1);
        const i64 bad = column_total(counts, blocks, columns, 2);
        accuracy[0] = bad ? quiet_nan() : count > 0 ? (float)hits / (float)count : 0.0f;
    }
    BLOCK_STRIDE(c, n_per_class) {
        const i64 class_hits = column_total(counts, blocks, columns, 3 + 2 * c);
        const i64 class_count = column_total(counts, blocks, columns, 4 + 2 * c);
        per_class[c] = (float)class_hits / (float)(class_count > 1 ? class_count : 1);
    }
}
