// Shared by the elementwise neuron kernels (sigmoid.cu, swish.cu).
#pragma once

// Caffe's sigmoid, 0.5 tanh(x / 2) + 0.5: no overflow for any x, the same formula as the CPU pass.
__device__ __forceinline__ float sigmoid_of(float x) { return 0.5f * tanhf(0.5f * x) + 0.5f; }
