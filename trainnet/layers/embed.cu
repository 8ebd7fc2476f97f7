// Embed: y[m, :] = W[index(x[m]), :] (+ b), with W (K, N); the weight's gradient gathers, per
// row of W, the top gradient rows whose index is that row, in bottom order (no atomics).
#include "common.cuh"

// Caffe's static_cast<int>(x), clamped into [0, K) so that a bad index cannot leave W (the CPU
// pass reports it instead).  The clamp is in integers: (float)(K - 1) rounds up past the table
// for K > 2^24.  NaN and negatives give 0; values beyond i64 give K - 1.
__device__ __forceinline__ i64 embed_index(float x, i64 K) {
    if (!(x > 0.0f)) return 0;
    if (x >= 9.0e18f) return K - 1;
    const i64 k = (i64)x;
    return k < K - 1 ? k : K - 1;
}

extern "C" __global__ void embed_forward(float* y, const float* x, const float* w, const float* b,
                                         int has_bias, i64 K, i64 N, i64 count) {
    GRID_STRIDE(i, count) {
        const i64 m = i / N, c = i - m * N;
        const float v = w[embed_index(x[m], K) * N + c];
        y[i] = has_bias ? v + b[c] : v;
    }
}

// dW[k, :] = sum over m with index(x[m]) == k of dy[m, :], m ascending: one block per row k.
// The block marks which of the next blockDim.x indices are k and skips a span marking none.
extern "C" __global__ void embed_backward(float* dw, const float* dy, const float* x, i64 M, i64 K,
                                          i64 N) {
    __shared__ int hit[1024];
    __shared__ int any;
    const i64 k = blockIdx.x;
    float* row = dw + k * N;
    BLOCK_STRIDE(c, N) row[c] = 0.0f;
    for (i64 base = 0; base < M; base += blockDim.x) {
        if (threadIdx.x == 0) any = 0;
        __syncthreads();
        const i64 m = base + threadIdx.x;
        const int mine = m < M && embed_index(x[m], K) == k;
        hit[threadIdx.x] = mine;
        if (mine) any = 1;
        __syncthreads();
        if (any) {
            const i64 span = M - base < (i64)blockDim.x ? M - base : (i64)blockDim.x;
            for (i64 t = 0; t < span; ++t) {
                if (hit[t]) {
                    const float* d = dy + (base + t) * N;
                    BLOCK_STRIDE(c, N) row[c] += d[c];
                }
            }
        }
        __syncthreads();  // every thread is done with hit and any before they are rewritten
    }
}

// db[c] = sum over m of dy[m, c], m ascending: one thread per column
extern "C" __global__ void embed_bias_backward(float* db, const float* dy, i64 M, i64 N) {
    GRID_STRIDE(c, N) {
        float s = 0.0f;
        for (i64 m = 0; m < M; ++m) s += dy[m * N + c];
        db[c] = s;
    }
}
