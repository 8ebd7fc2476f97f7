// SoftmaxWithLoss over axis 1 of an (outer, C, inner) blob, one row (outer, inner) per thread.
// Forward is one block: each thread takes rows in turn (softmax into `prob`, the label's
// -log(max(p, FLT_MIN))), and the block sums the losses and the counted labels.  It keeps for
// backward the probabilities, each row's label code and the normalizer.  A counted label
// outside [0, C), which the CPU pass refuses, turns the loss and its gradient into NaN here
// (no host can be told mid-graph).
#include "common.cuh"

#define LABEL_IGNORED (-1)
#define LABEL_BAD (-2)

// The code of label value `v`: its class (truncated to an integer, as Caffe), LABEL_IGNORED,
// or LABEL_BAD for a counted label outside [0, C).
static __device__ __forceinline__ i64 label_code(float v, int C, int has_ignore, i64 ignore) {
    if (!(fabsf(v) < 9.2e18f)) return LABEL_BAD;  // NaN, infinite, or past int64
    const i64 k = (i64)v;
    if (has_ignore && k == ignore) return LABEL_IGNORED;
    return k >= 0 && k < C ? k : LABEL_BAD;
}

extern "C" __global__ void softmax_loss_forward(float* loss, float* prob, i64* code,
                                                float* norm_out, const float* x,
                                                const float* label, i64 rows, int C, i64 inner,
                                                int has_ignore, i64 ignore, float fixed_norm) {
    __shared__ float scratch[1024];
    const float nan = __int_as_float(0x7fffffff);
    float total = 0.0f, count = 0.0f;
    BLOCK_STRIDE(r, rows) {
        const i64 base = r / inner * C * inner + r % inner;
        float m = x[base];
        for (int c = 1; c < C; ++c) {
            const float v = x[base + c * inner];
            if (v > m || v != v) m = v;  // a NaN wins, as in np.max
        }
        float sum = 0.0f;
        for (int c = 0; c < C; ++c) {
            const float e = expf(x[base + c * inner] - m);
            prob[base + c * inner] = e;
            sum += e;
        }
        for (int c = 0; c < C; ++c) prob[base + c * inner] /= sum;
        const i64 k = label_code(label[r], C, has_ignore, ignore);
        code[r] = k;
        if (k == LABEL_IGNORED) continue;
        count += 1.0f;
        total -= k == LABEL_BAD ? nan : logf(fmaxf(prob[base + k * inner], 1.175494351e-38f));
    }
    total = block_sum(total, scratch);
    count = block_sum(count, scratch);
    if (threadIdx.x == 0) {
        const float norm = fixed_norm > 0.0f ? fixed_norm : fmaxf(count, 1.0f);  // VALID: 0
        loss[0] = total / norm;
        norm_out[0] = norm;
    }
}

// dx = (p - onehot(label)) * loss_weight / norm, 0 where the label is ignored.  The loss weight
// is top 0's diff, read on the device.
extern "C" __global__ void softmax_loss_backward(float* dx, const float* prob, const i64* code,
                                                 const float* norm, const float* top_diff, i64 n,
                                                 int C, i64 inner) {
    const float scale = top_diff[0] / norm[0];
    GRID_STRIDE(i, n) {
        const i64 t = i / inner;
        const int c = (int)(t % C);
        const i64 k = code[t / C * inner + i % inner];
        if (k == LABEL_BAD) dx[i] = __int_as_float(0x7fffffff);
        else if (k == LABEL_IGNORED) dx[i] = 0.0f;
        else dx[i] = (prob[i] - (c == k ? 1.0f : 0.0f)) * scale;
    }
}
