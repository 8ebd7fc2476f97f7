// Crop: the top is a box of the bottom.  Both are seen with 6 (merged) axes; the top's dims are
// t0..t5 (t0 is implied by the count), the bottom's strides s0..s5, and `base` is the bottom
// index of the box's first corner.
#include "common.cuh"

__device__ __forceinline__ i64 crop_source(i64 i, i64 t1, i64 t2, i64 t3, i64 t4, i64 t5,
                                           i64 s0, i64 s1, i64 s2, i64 s3, i64 s4, i64 s5,
                                           i64 base) {
    i64 src = base + (i % t5) * s5;
    i /= t5;
    src += (i % t4) * s4;
    i /= t4;
    src += (i % t3) * s3;
    i /= t3;
    src += (i % t2) * s2;
    i /= t2;
    src += (i % t1) * s1;
    i /= t1;
    return src + i * s0;
}

// top[i] = bottom[source of i]
extern "C" __global__ void crop_forward(float* top, const float* bottom, i64 t1, i64 t2, i64 t3,
                                        i64 t4, i64 t5, i64 s0, i64 s1, i64 s2, i64 s3, i64 s4,
                                        i64 s5, i64 base, i64 count) {
    GRID_STRIDE(i, count) {
        top[i] = bottom[crop_source(i, t1, t2, t3, t4, t5, s0, s1, s2, s3, s4, s5, base)];
    }
}

// dx[source of i] = dy[i]; the rest of dx was zeroed before (crop.py)
extern "C" __global__ void crop_backward(float* dx, const float* dy, i64 t1, i64 t2, i64 t3,
                                         i64 t4, i64 t5, i64 s0, i64 s1, i64 s2, i64 s3, i64 s4,
                                         i64 s5, i64 base, i64 count) {
    GRID_STRIDE(i, count) {
        dx[crop_source(i, t1, t2, t3, t4, t5, s0, s1, s2, s3, s4, s5, base)] = dy[i];
    }
}
