// Builds trainnet's CUDA sources as host C++ for the emulated backend (tests/emulation).
// One thread per block (blockDim = 1): a grid-stride loop visits every item in order, and a
// one-block-per-row kernel runs once per block with blockIdx set by the launcher.  This
// checks indexing, arithmetic and argument passing; it cannot find races.
#include <cmath>
#include <cfloat>
#include <cstdint>
#include <climits>

struct emu_dim3 { unsigned x, y, z; };
static emu_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
static emu_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

extern "C" void emu_set_block(unsigned block, unsigned grid) {
    blockIdx.x = block;
    gridDim.x = grid;
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __syncthreads() ((void)0)

inline float atomicAdd(float* p, float v) { float old = *p; *p += v; return old; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __int_as_float(int x) { union { int i; float f; } u; u.i = x; return u.f; }
inline int __float_as_int(float x) { union { int i; float f; } u; u.f = x; return u.i; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
using std::isnan;
using std::isinf;
