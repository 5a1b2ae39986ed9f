// The llama-family forward pass (llama, mistral, qwen2, qwen3, gemma3, phi3, smollm3, granite) over a batch
// of tokens of one or more sequences.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/threadpool.h"
#include "kv/kv_cache.h"
#include "model/weights.h"

namespace qrt::model {

class DevicePart;

// Work buffers for batches of up to n_batch tokens of up to n_seq_max sequences, sized once at load and
// reused for every call.
struct ForwardBuffers {
    ForwardBuffers(const Model& model, int n_batch, int n_ctx, int n_threads, int n_seq_max);

    int n_batch;
    int64_t row_stride;           // floats per thread in `row`
    std::vector<float> x;         // [n_batch][n_embd]  residual stream
    std::vector<float> xb;        // [n_batch][n_embd]  normed input of a sublayer, then its output
    std::vector<float> q;         // [n_batch][n_head * head_dim]
    std::vector<float> k, v;      // [n_batch][n_head_kv * head_dim]
    std::vector<float> att;       // [n_batch][n_head * head_dim]  attention output, heads concatenated
    std::vector<float> hb, hb2;   // [n_batch][n_ff]  FFN gate and up
    int64_t scores_stride = 0;    // floats per thread in `scores`
    std::vector<float> scores;    // [n_threads][scores_stride]  attention scores (cpu/ops.h attention_tile)
    std::vector<float> row;       // [n_threads][row_stride]  one dequantized weight row
    std::vector<float> inv_freq;  // [n_rot / 2]  RoPE: base^(-2i/n_rot) / rope_freqs[i] (or LongRoPE's)
    std::vector<float> inv_freq_swa;  // [n_rot / 2]  sliding-window layers: their own base, no factors
    std::vector<int32_t> kv_layer;    // [n_layer]  the layer's index among its cache's layers (global or
                                      // sliding-window)
    std::vector<int32_t> slot;        // [n_batch]  each token's index in its sequence's cache
    std::vector<int32_t> tile;        // [n_batch + 1]  first token of each attention tile, then n
    std::vector<int32_t> seq_n;       // [n_seq_max]  tokens of each sequence in the batch
    std::vector<int32_t> seq1;        // [n_batch]  the one-sequence forward's sequence ids
    std::vector<uint8_t> want1;       // [n_batch]  the one-sequence forward's logit flags
};

// Runs tokens[0..n) through the model (1 <= n <= buf.n_batch); token t belongs to sequence seq[t] and
// sits at position pos[t] (RoPE). Each token's K and V are appended to its own sequence's cache, in batch
// order: a sequence's tokens in the batch follow its cached ones, in the order they appear. Every
// sequence must have room (KvCache::reserve throws std::length_error otherwise, and a bad id throws
// std::out_of_range, both before anything is written). Attention is causal within a sequence: token t
// sees its sequence's cached tokens, the earlier tokens of its sequence in the batch, and itself.
// Logits: one [n_vocab] row per token with want[t] != 0 (want == nullptr: every token), in token order,
// so logits is [count of wanted tokens][n_vocab]; logits == nullptr skips the output layer. Token ids
// must be in [0, n_vocab). Allocates nothing.
// With a device part (model/offload.h), the layers from device->placement().first on (and the head, when
// it says so) run there, and kv stores only the CPU layers; device == nullptr: all on the CPU.
// Models with sliding-window layers (hp.has_swa()) keep those layers' K and V in kv_swa, a window cache
// (kv/kv_cache.h) with the same sequences, and kv holds the other layers; kv_swa is nullptr otherwise.
void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, const int32_t* tokens,
             const int32_t* seq, const int32_t* pos, int n, const uint8_t* want, float* logits,
             DevicePart* device = nullptr, KvCache* kv_swa = nullptr);

// The pieces, for device parts that run on the CPU kernels (cpu-test):
// Layers [first, last) of `layers` over buf.x [n][n_embd], token t being seq[t]'s cache slot buf.slot[t] at
// position pos[t]; layer l's K and V go to pools[l - first] through kv's block tables (reserved), or with a
// window cache kv_swa (only with first = 0), to pools[buf.kv_layer[l]] of kv or of kv_swa.
void forward_layers(const HParams& hp, const LayerWeights* layers, int64_t first, int64_t last,
                    const KvCache& kv, const KvPools* pools, ThreadPool& pool, ForwardBuffers& buf,
                    const int32_t* seq, const int32_t* pos, int n, const KvCache* kv_swa = nullptr);
// logits [n_out][n_vocab] = output(rmsnorm(x[t]) * output_norm) for the tokens with want[t] != 0 (want ==
// nullptr: all), in token order, then granite's logit scale and gemma's soft-capping; uses buf.xb.
void forward_head(const HParams& hp, const Vector& output_norm, const Matrix& output, ThreadPool& pool,
                  ForwardBuffers& buf, const float* x, int n, const uint8_t* want, float* logits);

// One sequence: the general forward with seq[t] = seq for every token; logits are [n][n_vocab] when
// all_logits, else the last token's [n_vocab].
void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, int seq,
             const int32_t* tokens, const int32_t* pos, int n, float* logits, bool all_logits,
             DevicePart* device = nullptr, KvCache* kv_swa = nullptr);

}  // namespace qrt::model
