// Slice: one strided copy per top.  A top is `chunk` values per outer index; in the bottom they
// start at `offset` within a row of `bottom_chunk` values.
#include "common.cuh"

// top[o, r] = bottom[o, offset + r] over the top's `count` values
extern "C" __global__ void slice_forward(float* top, const float* bottom, i64 chunk,
                                         i64 bottom_chunk, i64 offset, i64 count) {
    GRID_STRIDE(i, count) {
        const i64 o = i / chunk;
        top[i] = bottom[o * bottom_chunk + offset + (i - o * chunk)];
    }
}

// dx[o, offset + r] = dy[o, r], or 0 where the top has no gradient (has_dy 0: dy is not read)
extern "C" __global__ void slice_backward(float* dx, const float* dy, int has_dy, i64 chunk,
                                          i64 bottom_chunk, i64 offset, i64 count) {
    GRID_STRIDE(i, count) {
        const i64 o = i / chunk;
        dx[o * bottom_chunk + offset + (i - o * chunk)] = has_dy ? dy[i] : 0.0f;
    }
}
