// Element-wise ops: residual and bias adds, SwiGLU (silu(gate) * up), and gathering rows.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace qrt::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void add_kernel(float* x, const float* b, int64_t n, int64_t total, int64_t b_stride) {
    const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= total) return;
    const int64_t t = i / n, j = i % n;
    x[i] += b[t * b_stride + j];
}

__global__ void silu_mul_kernel(float* gate, const float* up, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void gather_kernel(float* out, const float* x, const int32_t* rows, int64_t n, int64_t total) {
    const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= total) return;
    out[i] = x[int64_t(rows[i / n]) * n + i % n];
}

}  // namespace

void add(float* x, const float* b, int64_t n, int n_tok, int64_t b_stride) {
    const int64_t total = n * n_tok;
    if (total > 0) add_kernel<<<blocks_for(total, kThreads), kThreads>>>(x, b, n, total, b_stride);
}

void silu_mul(float* gate, const float* up, int64_t n) {
    if (n > 0) silu_mul_kernel<<<blocks_for(n, kThreads), kThreads>>>(gate, up, n);
}

void gather_rows(float* out, const float* x, const int32_t* rows, int n_rows, int64_t n) {
    const int64_t total = n * n_rows;
    if (total > 0) gather_kernel<<<blocks_for(total, kThreads), kThreads>>>(out, x, rows, n, total);
}

}  // namespace qrt::cuda
