// The llama-family forward pass (llama, mistral, qwen2) over a batch of tokens of one sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/threadpool.h"
#include "kv/kv_cache.h"
#include "model/weights.h"

namespace qrt::model {

// Work buffers for batches of up to n_batch tokens, sized once at load and reused for every call.
struct ForwardBuffers {
    ForwardBuffers(const Model& model, int n_batch, int n_ctx, int n_threads);

    int n_batch;
    int64_t row_stride;           // floats per thread in `row`
    std::vector<float> x;         // [n_batch][n_embd]  residual stream
    std::vector<float> xb;        // [n_batch][n_embd]  normed input of a sublayer, then its output
    std::vector<float> q;         // [n_batch][n_head * head_dim]
    std::vector<float> k, v;      // [n_batch][n_head_kv * head_dim]
    std::vector<float> att;       // [n_batch][n_head * head_dim]  attention output, heads concatenated
    std::vector<float> hb, hb2;   // [n_batch][n_ff]  FFN gate and up
    std::vector<float> scores;    // [n_threads][n_ctx]  attention scores of one (token, head)
    std::vector<float> row;       // [n_threads][row_stride]  one dequantized weight row
    std::vector<float> inv_freq;  // [head_dim / 2]  RoPE: base^(-2i/head_dim) / rope_freqs[i]
};

// Runs tokens[0..n) of `seq` at positions pos[0..n) through the model (1 <= n <= buf.n_batch),
// appends their K and V to the cache (the sequence must have room: KvCache::reserve throws
// std::length_error otherwise) and writes logits: [n][n_vocab] when all_logits, else the last token's
// [n_vocab]; logits == nullptr skips the output layer. Token ids must be in [0, n_vocab).
// Attention is causal in cache order: each token sees the sequence's earlier tokens and itself.
void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, int seq,
             const int32_t* tokens, const int32_t* pos, int n, float* logits, bool all_logits);

}  // namespace qrt::model
