// The solver's update over the flat parameter arena (solver/update.py): an optional
// sum-of-squares reduction for clip_gradients, then one fused kernel per rule that does
// clip -> / iter_size -> regularize -> the rule's step -> w -= step in registers.
//
// Every kernel is captured once into a CUDA graph and replayed, so what changes per iteration
// (the rate, Adam's bias correction) is read from `hyper` in device memory, written by
// UpdateRule.prepare before each replay.  The float32 operations follow the CPU rule's order.
#include "common.cuh"

#define HYPER_RATE 0        // the iteration's learning rate
#define HYPER_CORRECTION 1  // Adam: sqrt(1 - beta2^t) / (1 - beta1^t)

#define REG_NONE 0
#define REG_L2 1
#define REG_L1 2

// counts[block] = how many g[i] of this block's grid-stride loop are NaN or infinite: the
// solver reads them with the loss and stops before an update that would spoil the weights.
extern "C" __global__ void update_count_nonfinite(float* counts, const float* g, i64 n) {
    float s = 0.0f;
    GRID_STRIDE(i, n) s += fabsf(g[i]) <= 3.402823466e38f ? 0.0f : 1.0f;  // false for NaN too
    float total = block_sum(s);
    if (threadIdx.x == 0) counts[blockIdx.x] = total;
}

// partials[block] = sum of g[i]^2 over the items of this block's grid-stride loop.
extern "C" __global__ void update_sum_squares(float* partials, const float* g, i64 n) {
    float s = 0.0f;
    GRID_STRIDE(i, n) s += g[i] * g[i];
    float total = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// One block: scale[0] = clip / ||g|| where ||g|| > clip, else 1 (a fixed order of additions).
extern "C" __global__ void update_clip_scale(float* scale, const float* partials, float clip,
                                             i64 blocks) {
    float s = 0.0f;
    BLOCK_STRIDE(i, blocks) s += partials[i];
    float norm = sqrtf(block_sum(s));
    if (threadIdx.x == 0) scale[0] = norm > clip ? clip / norm : 1.0f;
}

// The steps every rule shares, as UpdateRule.apply: clip, / iter_size, regularize.
__device__ __forceinline__ float regularized(float g, float w, float decay, float clip_scale,
                                             float inv_iter, int reg) {
    g *= clip_scale;
    g *= inv_iter;
    if (reg == REG_L2) g += decay * w;
    if (reg == REG_L1) g += (float)((w > 0.0f) - (w < 0.0f)) * decay;
    return g;
}

// The arguments every update kernel starts with (outputs first), then the rule's own.
#define UPDATE_ARGS float* __restrict__ w, float* __restrict__ g
#define SHARED_ARGS const float* __restrict__ lr_mult, const float* __restrict__ decay, \
    const float* __restrict__ hyper, const float* __restrict__ clip_scale, float inv_iter, int reg

// v = mu v + lr g; step v
extern "C" __global__ void sgd_update(UPDATE_ARGS, float* __restrict__ v, SHARED_ARGS,
                                      float momentum, i64 n) {
    const float rate = hyper[HYPER_RATE], scale = clip_scale[0];
    GRID_STRIDE(i, n) {
        float grad = regularized(g[i], w[i], decay[i], scale, inv_iter, reg);
        float vi = v[i] * momentum + lr_mult[i] * rate * grad;
        v[i] = vi;
        g[i] = vi;
        w[i] -= vi;
    }
}

// v' = mu v + lr g; step (1 + mu) v' - mu v
extern "C" __global__ void nesterov_update(UPDATE_ARGS, float* __restrict__ v, SHARED_ARGS,
                                           float momentum, i64 n) {
    const float rate = hyper[HYPER_RATE], scale = clip_scale[0];
    GRID_STRIDE(i, n) {
        float grad = regularized(g[i], w[i], decay[i], scale, inv_iter, reg);
        float previous = v[i];
        float vi = previous * momentum + lr_mult[i] * rate * grad;
        float step = vi * (1.0f + momentum) - previous * momentum;
        v[i] = vi;
        g[i] = step;
        w[i] -= step;
    }
}

// h += g^2; step lr g / (sqrt(h) + delta)
extern "C" __global__ void adagrad_update(UPDATE_ARGS, float* __restrict__ h, SHARED_ARGS,
                                          float delta, i64 n) {
    const float rate = hyper[HYPER_RATE], scale = clip_scale[0];
    GRID_STRIDE(i, n) {
        float grad = regularized(g[i], w[i], decay[i], scale, inv_iter, reg);
        float hi = h[i] + grad * grad;
        float step = grad / (sqrtf(hi) + delta) * (lr_mult[i] * rate);
        h[i] = hi;
        g[i] = step;
        w[i] -= step;
    }
}

// h = d h + (1 - d) g^2; step lr g / (sqrt(h) + delta)
extern "C" __global__ void rmsprop_update(UPDATE_ARGS, float* __restrict__ h, SHARED_ARGS,
                                          float rms_decay, float delta, i64 n) {
    const float rate = hyper[HYPER_RATE], scale = clip_scale[0];
    GRID_STRIDE(i, n) {
        float grad = regularized(g[i], w[i], decay[i], scale, inv_iter, reg);
        float hi = h[i] * rms_decay + grad * grad * (1.0f - rms_decay);
        float step = grad / (sqrtf(hi) + delta) * (lr_mult[i] * rate);
        h[i] = hi;
        g[i] = step;
        w[i] -= step;
    }
}

// h = mu h + (1 - mu) g^2; update = g sqrt((u + delta) / (h + delta));
// u = mu u + (1 - mu) update^2; step lr update
extern "C" __global__ void adadelta_update(UPDATE_ARGS, float* __restrict__ h,
                                           float* __restrict__ u, SHARED_ARGS, float momentum,
                                           float delta, i64 n) {
    const float rate = hyper[HYPER_RATE], scale = clip_scale[0];
    GRID_STRIDE(i, n) {
        float grad = regularized(g[i], w[i], decay[i], scale, inv_iter, reg);
        float hi = h[i] * momentum + grad * grad * (1.0f - momentum);
        float update = grad * sqrtf((u[i] + delta) / (hi + delta));
        float ui = u[i] * momentum + update * update * (1.0f - momentum);
        float step = update * (lr_mult[i] * rate);
        h[i] = hi;
        u[i] = ui;
        g[i] = step;
        w[i] -= step;
    }
}

// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; step lr correction m / (sqrt(v) + eps)
extern "C" __global__ void adam_update(UPDATE_ARGS, float* __restrict__ m, float* __restrict__ v,
                                       SHARED_ARGS, float beta1, float beta2, float delta, i64 n) {
    const float correction = hyper[HYPER_CORRECTION];
    const float rate = hyper[HYPER_RATE], scale = clip_scale[0];
    GRID_STRIDE(i, n) {
        float grad = regularized(g[i], w[i], decay[i], scale, inv_iter, reg);
        float mi = m[i] * beta1 + grad * (1.0f - beta1);
        float vi = v[i] * beta2 + grad * grad * (1.0f - beta2);
        float step = mi / (sqrtf(vi) + delta) * (lr_mult[i] * rate) * correction;
        m[i] = mi;
        v[i] = vi;
        g[i] = step;
        w[i] -= step;
    }
}
