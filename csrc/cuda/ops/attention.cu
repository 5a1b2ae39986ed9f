// The paged KV cache on the device: storing a batch's K and V, and attention over it.
//
// Attention is one warp per (token, query head): the lanes split head_dim (lane l holds dimensions l,
// l + 32, ...), each key's score is a warp reduction, and an online softmax (running max and sum, the
// accumulator rescaled when the max grows) walks the sequence's blocks once, so nothing is sized by
// n_ctx. Long contexts would want flash-decoding (the keys split over several warps, then merged); that is
// still to come.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace qrt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kKvBlock = 16;  // tokens per cache block (kv/kv_cache.h)
constexpr int kPerLane = kMaxHeadDim / kWarp;

__device__ __forceinline__ int64_t cache_at(const PagedPools& kv, int seq, int slot, int head) {
    const int32_t block = kv.tables[int64_t(seq) * kv.blocks_per_seq + slot / kKvBlock];
    return ((int64_t(block) * kv.n_kv_head + head) * kKvBlock + slot % kKvBlock) * kv.head_dim;
}

__global__ void kv_store_kernel(PagedPools kv, const float* k, const float* v, int64_t total,
                                const int32_t* seq, const int32_t* slot) {
    const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= total) return;
    const int64_t per_token = int64_t(kv.n_kv_head) * kv.head_dim;
    const int64_t t = i / per_token, e = i % per_token;
    const int h = int(e / kv.head_dim), d = int(e % kv.head_dim);
    const int64_t at = cache_at(kv, seq[t], slot[t], h) + d;
    kv.k[at] = fp32_to_fp16(k[i]);
    kv.v[at] = fp32_to_fp16(v[i]);
}

__global__ void attention_kernel(float* out, const float* q, PagedPools kv, int64_t total, int n_head,
                                 const int32_t* seq, const int32_t* slot, float scale) {
    const int64_t w = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kWarp;  // token * n_head + head
    const int lane = int(threadIdx.x) % kWarp;
    if (w >= total) return;  // whole warps leave together
    const int64_t t = w / n_head;
    const int h = int(w % n_head), hd = kv.head_dim;
    const int kv_head = h / (n_head / kv.n_kv_head);
    const float* qh = q + w * hd;
    float qr[kPerLane], acc[kPerLane];
    for (int j = 0; j < kPerLane; ++j) {
        const int d = lane + j * kWarp;
        qr[j] = d < hd ? qh[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int s = 0; s <= slot[t]; ++s) {
        const int64_t at = cache_at(kv, seq[t], s, kv_head);
        float dot = 0.0f;
        for (int j = 0; j < kPerLane; ++j) {
            const int d = lane + j * kWarp;
            if (d < hd) dot += qr[j] * fp16_to_fp32(kv.k[at + d]);
        }
        const float score = warp_sum(dot) * scale;
        const float m_new = fmaxf(m, score);
        const float corr = expf(m - m_new), p = expf(score - m_new);
        l = l * corr + p;
        for (int j = 0; j < kPerLane; ++j) {
            const int d = lane + j * kWarp;
            if (d < hd) acc[j] = acc[j] * corr + p * fp16_to_fp32(kv.v[at + d]);
        }
        m = m_new;
    }
    float* oh = out + w * hd;
    for (int j = 0; j < kPerLane; ++j) {
        const int d = lane + j * kWarp;
        if (d < hd) oh[d] = acc[j] / l;
    }
}

}  // namespace

void kv_store(const PagedPools& kv, const float* k, const float* v, int n_tok, const int32_t* seq,
              const int32_t* slot) {
    const int64_t total = int64_t(n_tok) * kv.n_kv_head * kv.head_dim;
    if (total > 0) kv_store_kernel<<<blocks_for(total, kThreads), kThreads>>>(kv, k, v, total, seq, slot);
}

void attention(float* out, const float* q, const PagedPools& kv, int n_tok, int n_head, const int32_t* seq,
               const int32_t* slot, float scale) {
    const int64_t total = int64_t(n_tok) * n_head;  // warps
    if (total > 0)
        attention_kernel<<<blocks_for(total * kWarp, kThreads), kThreads>>>(out, q, kv, total, n_head, seq,
                                                                            slot, scale);
}

}  // namespace qrt::cuda
