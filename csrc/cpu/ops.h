// The non-matmul operations of the forward pass, in plain scalar C++ (the reference every faster
// version is tested against). They know nothing of models or graphs: pointers and sizes in, results out.
//
// silu_mul and attention_head(s) dispatch: on Isa::Avx2 they run the versions in ops_avx2.cpp (8-lane float
// math, a vector exp), on Isa::Neon those in ops_neon.cpp (4-lane), elsewhere the scalar references *_ref
// below. The two agree up to float rounding
// (tests/cpp/test_kernels.cpp bounds the difference).
//
// Conventions: float activations; `n` counts floats; out may alias x where noted.
#pragma once

#include <cstdint>

#include "format/common.h"
#include "format/types.h"

namespace qrt {

// sum_i a[i] * b[i]; sixteen independent partial sums so the compiler can vectorize it.
float dot(const float* a, const float* b, int64_t n);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]   (out may alias x)
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps);

// In-place softmax of x[0..n).
void softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g))
void silu_mul(float* gate, const float* up, int64_t n);
void silu_mul_ref(float* gate, const float* up, int64_t n);

// gate[i] = gelu(gate[i]) * up[i] with the tanh approximation (PyTorch's approximate="tanh", ggml_gelu):
// gelu(g) = g/2 (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))), which the AVX2 version computes as
// g / (1 + e^(-2 sqrt(2/pi) (g + 0.044715 g^3))), the same function.
void gelu_mul(float* gate, const float* up, int64_t n);
void gelu_mul_ref(float* gate, const float* up, int64_t n);

// out[i] += b[i]
void add(float* out, const float* b, int64_t n);

// RoPE of one token: rotates the leading n_rot dimensions of each of the n_head heads of x
// ([n_head][head_dim], in place) by angles pos * freq_scale * inv_freq[i] for pair i < n_rot/2, where
// inv_freq[i] = base^(-2i/n_rot) / factors[i], with cos and sin scaled by mscale (LongRoPE's attention
// factor; 1 otherwise), as ggml_rope_ext computes it without YaRN. neox = false pairs dimensions (2i, 2i+1)
// (llama.cpp's NORM, used with Q/K rows that the converter permuted; n_rot = head_dim); neox = true pairs
// (i, i + n_rot/2) (Hugging Face's rotate_half). The cos/sin of the last position seen are kept per thread
// (q and k of a token, and every layer, share them).
void rope(float* x, int n_head, int head_dim, int n_rot, int32_t pos, const float* inv_freq, float freq_scale,
          float mscale, bool neox);

// Walsh-Hadamard rotation of n_rows rows of n floats (n a power of two), in place: x = H x with H the
// orthonormal Sylvester Hadamard matrix, H[i][j] = (-1)^popcount(i & j) / sqrt(n), by the fast transform's
// butterflies. H is symmetric and H H = I, so applying it twice gives x back (up to rounding), and dot
// products are unchanged: (H q) . (H k) = q . k. A quantized KV cache stores rotated keys and values
// (model/forward.cpp), which spreads a head's outlier channels over the whole 32-value block.
void hadamard(float* x, int64_t n_rows, int n);

// A layer's K and V in the paged cache (kv/kv_cache.h): one sequence's view.
//
// Each pool is [n_blocks][n_kv_head][block_size][row], one row per (head, token) of head_dim values in the
// pool's type: F16 (2 bytes a value) or, for a quantized cache, ggml's Q8_0 / Q4_0 blocks of 32 values
// along head_dim (format/legacy.h; head_dim a multiple of 32), kv_row_bytes(type, head_dim) bytes a row.
struct PagedKv {
    const uint8_t* k = nullptr;            // [n_blocks][n_kv_head][block_size][row of k_type]
    const uint8_t* v = nullptr;            // [n_blocks][n_kv_head][block_size][row of v_type]
    const int32_t* block_table = nullptr;  // logical block -> physical block
    int n_kv_head = 0, head_dim = 0, block_size = 0;
    // > 0: sliding-window attention; a query that sees keys [0, n_kv) attends only to the last `window` of
    // them (keys t < n_kv - window are masked). Every attention function below honours it.
    int window = 0;
    TypeId k_type = TypeId::F16, v_type = TypeId::F16;  // F16, Q8_0 or Q4_0
    // The first key a query over keys [0, n_kv) attends to.
    int first_key(int n_kv) const { return window > 0 && n_kv > window ? n_kv - window : 0; }
    bool quantized() const { return k_type != TypeId::F16 || v_type != TypeId::F16; }
    // The f16 pools (k_type, v_type F16) as halves.
    const half_bits* k16() const { return reinterpret_cast<const half_bits*>(k); }
    const half_bits* v16() const { return reinterpret_cast<const half_bits*>(v); }
};

// Bytes of one cached row of head_dim values of `type` (F16, Q8_0, Q4_0; quantized: head_dim % 32 == 0).
int64_t kv_row_bytes(TypeId type, int head_dim);

// One query head attending over the first n_kv tokens of the cache:
//   out[head_dim] = softmax(scale * q . K[t], t < n_kv) . V
// reading KV head kv_head; scores is scratch of n_kv floats.
void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores);
void attention_head_ref(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                        float* scores);

// n_q query heads that read the same KV head (GQA: the heads of one group), q and out [n_q][head_dim]: each
// head's output is exactly attention_head's for it. The AVX2 version widens every K and V row once for up to
// kAttentionMaxGroup heads at a time. scores is scratch of min(n_q, kAttentionMaxGroup) * n_kv floats.
constexpr int kAttentionMaxGroup = 4;
void attention_heads(float* out, const float* q, int n_q, const PagedKv& kv, int kv_head, int n_kv,
                     float scale, float* scores);

// Prefill: n_tok consecutive query tokens of one sequence, token i's n_q heads (one GQA group) at
// q + i * stride and its output at out + i * stride, token i attending over the first n_kv + i keys. Each
// token's output is exactly attention_heads' for it alone. The AVX2 version widens each K and V row once for
// a tile of up to kAttentionTile tokens instead of once per token; elsewhere it is attention_heads per token.
// scores is scratch of min(n_tok, kAttentionTile) * min(n_q, kAttentionMaxGroup) * (n_kv + n_tok - 1)
// floats.
constexpr int kAttentionTile = 16;
void attention_tile(float* out, const float* q, int64_t stride, int n_tok, int n_q, const PagedKv& kv,
                    int kv_head, int n_kv, float scale, float* scores);

#if defined(QRT_HAVE_AVX2)
// The AVX2 versions (ops_avx2.cpp): call only where cpu_features() has avx2, fma and f16c.
namespace avx2 {
void silu_mul(float* gate, const float* up, int64_t n);
void gelu_mul(float* gate, const float* up, int64_t n);
// head_dim must be a multiple of 8 and at most kMaxHeadDim.
constexpr int kMaxHeadDim = 256;
void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores);
void attention_heads(float* out, const float* q, int n_q, const PagedKv& kv, int kv_head, int n_kv,
                     float scale, float* scores);
// n_tok <= kAttentionTile.
void attention_tile(float* out, const float* q, int64_t stride, int n_tok, int n_q, const PagedKv& kv,
                    int kv_head, int n_kv, float scale, float* scores);
}  // namespace avx2
#endif

#if defined(QRT_HAVE_NEON)
// The NEON versions (ops_neon.cpp): the same algorithms on 4-lane vectors.
namespace neon {
void silu_mul(float* gate, const float* up, int64_t n);
// head_dim must be a multiple of 4 and at most kMaxHeadDim.
constexpr int kMaxHeadDim = 256;
void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores);
}  // namespace neon
#endif

}  // namespace qrt
