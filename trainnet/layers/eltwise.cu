// Eltwise: SUM, PROD and MAX of up to four inputs per launch (eltwise.py chains launches for
// more), the MAX gradient routed to the kept winner, and the masks of a fused ReLU.
#include "common.cuh"

// out = op over x0..x(count-1), continuing from out (and winner) when first > 0:
//   SUM  (op 1): c0*x0 + c1*x1 + ...      PROD (op 0): ((x0*x1)*x2)...
//   MAX  (op 2): Caffe's ties, x0 > x1 ? x0 : x1, then a strict > for later inputs; when
//                keep_winner, winner holds the index (first + k) of the input that won.
// Inputs past count and winner without keep_winner are never touched.  relu: max(., 0) at the end.
extern "C" __global__ void eltwise_combine(float* out, int* winner, const float* x0,
                                           const float* x1, const float* x2, const float* x3,
                                           float c0, float c1, float c2, float c3, int count,
                                           int op, int first, int keep_winner, int relu, i64 n) {
    GRID_STRIDE(i, n) {
        const float x[4] = {x0[i], count > 1 ? x1[i] : 0.0f, count > 2 ? x2[i] : 0.0f,
                            count > 3 ? x3[i] : 0.0f};
        const float c[4] = {c0, c1, c2, c3};
        float v;
        int k = 0, win = 0;
        if (op == 2) {
            if (first > 0) {
                v = out[i];
                if (keep_winner) win = winner[i];
            } else {
                v = x[0] > x[1] ? x[0] : x[1];
                win = x[0] > x[1] ? 0 : 1;
                k = 2;
            }
            for (; k < count; ++k) {
                if (x[k] > v) { v = x[k]; win = first + k; }
            }
            if (keep_winner) winner[i] = win;
        } else if (op == 1) {
            v = first > 0 ? out[i] + c[0] * x[0] : c[0] * x[0];
            for (k = 1; k < count; ++k) v += c[k] * x[k];
        } else {
            v = first > 0 ? out[i] * x[0] : x[0];
            for (k = 1; k < count; ++k) v *= x[k];
        }
        out[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

// dx = dy where bottom `index` won the forward's MAX, else 0.
extern "C" __global__ void eltwise_max_backward(float* dx, const float* dy, const int* winner,
                                                int index, i64 n) {
    GRID_STRIDE(i, n) dx[i] = winner[i] == index ? dy[i] : 0.0f;
}

// PROD without stable_prod_grad: dx holds the recomputed top; dx = top / x * dy.
extern "C" __global__ void eltwise_prod_backward_unstable(float* dx, const float* x,
                                                          const float* dy, i64 n) {
    GRID_STRIDE(i, n) dx[i] = dx[i] / x[i] * dy[i];
}

// dy = 0 where the (post-ReLU) top is not positive: the backward of a fused ReLU, in place.
extern "C" __global__ void eltwise_relu_backward(float* dy, const float* top, i64 n) {
    GRID_STRIDE(i, n) {
        if (!(top[i] > 0.0f)) dy[i] = 0.0f;
    }
}
