// RMSNorm: one thread block per token; the sum of squares is reduced in shared memory, then each thread
// scales its elements (out may alias x: every read of x happens before the first write).
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace qrt::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int64_t n, float eps) {
    __shared__ float partial[kThreads / kWarp];
    const float* xt = x + int64_t(blockIdx.x) * n;
    float* ot = out + int64_t(blockIdx.x) * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) ss += xt[i] * xt[i];
    ss = warp_sum(ss);
    if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < kThreads / kWarp; ++i) total += partial[i];
    const float scale = float(1.0 / sqrt(double(total) / double(n) + double(eps)));
    __syncthreads();  // every thread has its total before anyone writes (out may be x)
    for (int64_t i = threadIdx.x; i < n; i += kThreads) ot[i] = xt[i] * scale * w[i];
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, int64_t n, int n_tok, float eps) {
    if (n_tok > 0) rmsnorm_kernel<<<unsigned(n_tok), kThreads>>>(out, x, w, n, eps);
}

}  // namespace qrt::cuda
