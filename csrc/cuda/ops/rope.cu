// RoPE: one thread per (token, head, rotated pair); angles in double, as the CPU computes them.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace qrt::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rope_kernel(float* x, int64_t total, int n_head, int head_dim, const int32_t* pos,
                            const float* inv_freq, float freq_scale, bool neox) {
    const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (idx >= total) return;
    const int half = head_dim / 2;
    const int i = int(idx % half);
    const int64_t th = idx / half;  // token * n_head + head
    const int64_t t = th / n_head;
    const double theta = double(pos[t]) * double(freq_scale) * double(inv_freq[i]);
    const float c = float(cos(theta)), s = float(sin(theta));
    float* xh = x + th * head_dim;
    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    const float x0 = xh[a], x1 = xh[b];
    xh[a] = x0 * c - x1 * s;
    xh[b] = x0 * s + x1 * c;
}

}  // namespace

void rope(float* x, int n_tok, int n_head, int head_dim, const int32_t* pos, const float* inv_freq,
          float freq_scale, bool neox) {
    const int64_t total = int64_t(n_tok) * n_head * (head_dim / 2);
    if (total > 0)
        rope_kernel<<<blocks_for(total, kThreads), kThreads>>>(x, total, n_head, head_dim, pos, inv_freq,
                                                               freq_scale, neox);
}

}  // namespace qrt::cuda
