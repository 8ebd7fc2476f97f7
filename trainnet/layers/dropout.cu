// Dropout, inverted: TRAIN y = x * mask with mask = scale where uniform >= ratio, else 0.
// The draw for element i of pass `counter` is Philox4x32-10 of counter (i, pass) and the layer's
// key (layers/rng.py draws the same numbers on the CPU).  Key and pass counter are read from
// device memory, so a captured graph draws a new mask on every replay (tick_u64 below advances
// the counter after this kernel).
#include "common.cuh"

extern "C" __global__ void dropout_forward(float* y, float* mask, const float* x, const u64* key,
                                           const u64* counter, float ratio, float scale, i64 n) {
    const u64 k = key[0], c = counter[0];
    GRID_STRIDE(i, n) {
        u32 bits = philox4x32((u32)i, (u32)((u64)i >> 32), (u32)c, (u32)(c >> 32), (u32)k,
                              (u32)(k >> 32));
        float m = uniform24(bits) >= ratio ? scale : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

// y = x * m[i] (TRAIN backward: dx = dy * mask)
extern "C" __global__ void dropout_backward(float* dx, const float* dy, const float* mask, i64 n) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * mask[i];
}

// y = x * scale (TEST, both passes)
extern "C" __global__ void dropout_scale(float* y, const float* x, float scale, i64 n) {
    GRID_STRIDE(i, n) y[i] = x[i] * scale;
}

// counter += 1 (a single thread): the next pass draws a new mask, replayed graphs included
extern "C" __global__ void tick_u64(u64* counter) {
    if (blockIdx.x == 0 && threadIdx.x == 0) counter[0] += 1;
}
