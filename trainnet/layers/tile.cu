// Tile: the top is (outer, tiles, inner), each tile a copy of the bottom's (outer, inner) row.
#include "common.cuh"

// y[o, t, r] = x[o, r], one thread per top value
extern "C" __global__ void tile_forward(float* y, const float* x, i64 inner, i64 tiles,
                                        i64 count) {
    GRID_STRIDE(i, count) {
        const i64 o = i / (tiles * inner);
        y[i] = x[o * inner + i % inner];
    }
}

// dx[o, r] = sum over t of dy[o, t, r], in tile order, one thread per bottom value
extern "C" __global__ void tile_backward(float* dx, const float* dy, i64 inner, i64 tiles,
                                         i64 count) {
    GRID_STRIDE(i, count) {
        const i64 o = i / inner;
        const float* d = dy + o * tiles * inner + (i - o * inner);
        float s = d[0];
        for (i64 t = 1; t < tiles; ++t) s += d[t * inner];
        dx[i] = s;
    }
}
