// Split's backward: the bottom's gradient is the sum of its tops' gradients.
#include "common.cuh"

// dx = (accumulate ? dx : 0) + d0 + d1 + ... (the first `count` of d0..d3, added in that order,
// as the CPU pass adds them).  Unused pointers are never read.  More than four tops take one
// launch per four, the later ones accumulating.
extern "C" __global__ void split_backward(float* dx, const float* d0, const float* d1,
                                          const float* d2, const float* d3, int count,
                                          int accumulate, i64 n) {
    GRID_STRIDE(i, n) {
        float s = accumulate ? dx[i] + d0[i] : d0[i];
        if (count > 1) s += d1[i];
        if (count > 2) s += d2[i];
        if (count > 3) s += d3[i];
        dx[i] = s;
    }
}
