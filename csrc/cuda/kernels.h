// The CUDA backend's kernel launchers, callable from plain C++ (cuda/part.cpp). Every pointer is device
// memory; every launcher runs on the default stream and returns without synchronizing (launch errors are
// picked up by check()).
//
// The kernels are written for clarity first: one warp per output row for the dequant-matvec (the block
// math is the format/ headers' QRT_HD dequantize_block_* functions, shared with the CPU reference, so the
// CPU tests cover it), one warp per (token, head) for attention over the paged cache with an online
// softmax. No cuBLAS.
#pragma once

#include <cstdint>

#include "format/common.h"
#include "format/types.h"

namespace qrt::cuda {

// Throws std::runtime_error naming `what` if a CUDA call or launch failed.
void check(const char* what);

// Whether matvec handles the weight type.
bool matvec_supports(TypeId type);

// y[t][rows] = W x[t] for t < n_tok, x: [n_tok][cols]. W holds `rows` rows of row_bytes bytes (and, for
// NF4, its per-tensor state after the nbytes - rows * row_bytes of blocks).
void matvec(TypeId type, const uint8_t* w, int64_t cols, int64_t rows, uint64_t row_bytes, const float* x,
            int n_tok, float* y);

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, for t < n_tok rows of n floats (out may be x).
void rmsnorm(float* out, const float* x, const float* w, int64_t n, int n_tok, float eps);

// x[t] += b for t < n_tok rows of n floats: b_stride 0 adds one vector (a bias) to every row, n adds row t of
// b.
void add(float* x, const float* b, int64_t n, int n_tok, int64_t b_stride);

// gate[i] = silu(gate[i]) * up[i] for i < n.
void silu_mul(float* gate, const float* up, int64_t n);

// Rotates x [n_tok][n_head * head_dim] by positions pos[t] (neox: pairs (i, i + half), else (2i, 2i + 1)).
void rope(float* x, int n_tok, int n_head, int head_dim, const int32_t* pos, const float* inv_freq,
          float freq_scale, bool neox);

// The paged cache (kv/kv_cache.h): pools [n_blocks][n_kv_head][16][head_dim] f16; tables
// [n_seq][blocks_per_seq] (the host's block tables, uploaded); token t is seq[t]'s slot[t].
struct PagedPools {
    half_bits* k = nullptr;
    half_bits* v = nullptr;
    const int32_t* tables = nullptr;
    int blocks_per_seq = 0, n_kv_head = 0, head_dim = 0;
};

// Writes k, v [n_tok][n_kv_head * head_dim] into the pools.
void kv_store(const PagedPools& kv, const float* k, const float* v, int n_tok, const int32_t* seq,
              const int32_t* slot);

// out[t][h] = softmax(scale * q[t][h] . K) V over slots [0, slot[t]] of seq[t], KV head h / (n_head /
// n_kv_head). head_dim <= kMaxHeadDim.
constexpr int kMaxHeadDim = 256;
void attention(float* out, const float* q, const PagedPools& kv, int n_tok, int n_head, const int32_t* seq,
               const int32_t* slot, float scale);

// out[i] = x[rows[i]] for i < n_rows rows of n floats.
void gather_rows(float* out, const float* x, const int32_t* rows, int n_rows, int64_t n);

}  // namespace qrt::cuda
