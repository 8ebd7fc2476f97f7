// ArgMax: one thread per (outer, inner) position; its `dim` values lie `inner` apart.  Round k
// takes the largest (value, index) pair below the one taken in round k - 1, ties to the larger
// index (Caffe's std::greater on pairs).  The top is (outer, slots, top_k, inner): slot 0 the
// indices (when with_index), then the values (when with_value).
#include "common.cuh"

extern "C" __global__ void argmax_forward(float* y, const float* x, i64 rows, i64 dim, i64 inner,
                                          i64 top_k, int with_index, int with_value) {
    GRID_STRIDE(r, rows) {
        const i64 o = r / inner, p = r - o * inner;
        const float* row = x + o * dim * inner + p;
        const i64 slots = with_index + with_value;
        float* out = y + o * slots * top_k * inner + p;
        float last_v = 0.0f;
        i64 last_j = -1;
        for (i64 k = 0; k < top_k; ++k) {
            float best_v = 0.0f;
            i64 best_j = -1;
            for (i64 j = 0; j < dim; ++j) {
                const float v = row[j * inner];
                const bool left = last_j < 0 || v < last_v || (v == last_v && j < last_j);
                if (left && (best_j < 0 || v > best_v || (v == best_v && j > best_j))) {
                    best_v = v;
                    best_j = j;
                }
            }
            if (with_index) out[k * inner] = (float)best_j;
            if (with_value) out[((i64)with_index * top_k + k) * inner] = best_v;
            last_v = best_v;
            last_j = best_j;
        }
    }
}
