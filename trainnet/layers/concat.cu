// Concat: one strided copy per bottom.  A bottom is `chunk` values per outer index; in the top
// they start at `offset` within a row of `top_chunk` values.
#include "common.cuh"

// top[o, offset + r] = bottom[o, r] over the bottom's `count` values
extern "C" __global__ void concat_forward(float* top, const float* bottom, i64 chunk,
                                          i64 top_chunk, i64 offset, i64 count) {
    GRID_STRIDE(i, count) {
        const i64 o = i / chunk;
        top[o * top_chunk + offset + (i - o * chunk)] = bottom[i];
    }
}

// dx[o, r] = dy[o, offset + r]
extern "C" __global__ void concat_backward(float* dx, const float* dy, i64 chunk, i64 top_chunk,
                                           i64 offset, i64 count) {
    GRID_STRIDE(i, count) {
        const i64 o = i / chunk;
        dx[i] = dy[o * top_chunk + offset + (i - o * chunk)];
    }
}
