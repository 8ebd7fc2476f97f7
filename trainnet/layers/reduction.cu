// Reduction over the trailing `dim` values of each row.  op: 0 SUM, 1 ASUM, 2 SUMSQ, 3 MEAN
// (`coeff` already divided by dim for MEAN, as reduction.py passes it).  Rows reduce one block
// each; a single row (a whole blob reduced to a scalar) reduces in two stages instead.
#include "common.cuh"

static __device__ __forceinline__ float term(float v, int op) {
    return op == 1 ? fabsf(v) : (op == 2 ? v * v : v);
}

// y[row] = coeff * sum of f(x[row, :]): one block per row
extern "C" __global__ void reduction_forward(float* y, const float* x, int op, float coeff,
                                             i64 dim) {
    const float* row = x + (i64)blockIdx.x * dim;
    float s = 0.0f;
    BLOCK_STRIDE(j, dim) s += term(row[j], op);
    const float total = block_sum(s);
    if (threadIdx.x == 0) y[blockIdx.x] = coeff == 1.0f ? total : total * coeff;
}

// A single row in two stages, so that it fills the GPU: partials[block] = the sum of f(x[i])
// over the block's grid-stride items...
extern "C" __global__ void reduction_partials(float* partials, const float* x, int op, i64 dim) {
    float s = 0.0f;
    GRID_STRIDE(i, dim) s += term(x[i], op);
    const float total = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// ...then one block: y[0] = coeff * the sum of the partials, in a fixed order.
extern "C" __global__ void reduction_finish(float* y, const float* partials, float coeff,
                                            i64 blocks) {
    float s = 0.0f;
    BLOCK_STRIDE(b, blocks) s += partials[b];
    const float total = block_sum(s);
    if (threadIdx.x == 0) y[0] = coeff == 1.0f ? total : total * coeff;
}

// dx = coeff dy (SUM, MEAN), sign(x) coeff dy (ASUM), x (2 coeff dy) (SUMSQ); x unread for SUM
// and MEAN
extern "C" __global__ void reduction_backward(float* dx, const float* dy, const float* x, int op,
                                              float coeff, i64 dim, i64 count) {
    GRID_STRIDE(i, count) {
        const float scale = dy[i / dim] * coeff;
        if (op == 1) {
            const float v = x[i];
            const float sign = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
            dx[i] = sign * scale;
        } else if (op == 2) {
            dx[i] = x[i] * (scale * 2.0f);
        } else {
            dx[i] = scale;
        }
    }
}
