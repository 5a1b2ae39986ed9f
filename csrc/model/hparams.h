// Hyper-parameters of a llama-family model, read from GGUF metadata and validated.
//
// Keys are "<arch>.<name>" (FORMATS.md §1.3), arch = general.architecture. Supported architectures and
// what distinguishes them (llama.cpp's llama_model_rope_type and load_arch_tensors):
//
//   llama    RoPE on adjacent pairs (LLAMA_ROPE_TYPE_NORM: the converter permuted Q/K rows, §1.4);
//            Q/K/V/O biases optional. llama.cpp converts Mistral 7B-style checkpoints to "llama".
//   mistral  the llama graph under another name (files from converters that call it "mistral")
//   qwen2    RoPE on the two halves of each head (LLAMA_ROPE_TYPE_NEOX, no permutation); Q/K/V biases
//            required
//
// Every value the forward relies on is checked here, so the code behind it can assume: n_layer, n_embd,
// n_head, n_head_kv, n_ff, head_dim >= 1; n_head % n_head_kv == 0; head_dim even and equal to the RoPE
// dimension count; eps, freq_base, freq_scale positive and finite; all sizes small enough that products
// of two of them fit comfortably in int64. Failures throw FormatError ("<file>: metadata: ...") for
// missing, mistyped or out-of-range keys and UnsupportedError for valid settings qrt does not implement.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/gguf.h"

namespace qrt::model {

enum class RopeType {
    Norm,  // rotate pairs (2i, 2i+1)
    Neox,  // rotate pairs (i, i + head_dim/2)
};

struct HParams {
    std::string arch;         // general.architecture
    int64_t n_vocab = 0;      // <arch>.vocab_size, else len(tokenizer.ggml.tokens), else token_embd rows
    int64_t n_ctx_train = 0;  // <arch>.context_length
    int64_t n_embd = 0;       // <arch>.embedding_length
    int64_t n_layer = 0;      // <arch>.block_count
    int64_t n_ff = 0;         // <arch>.feed_forward_length
    int64_t n_head = 0;       // <arch>.attention.head_count
    int64_t n_head_kv = 0;    // <arch>.attention.head_count_kv (default n_head)
    int64_t head_dim = 0;     // <arch>.attention.key_length (default n_embd / n_head); value_length equal
    float rms_eps = 0;        // <arch>.attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000.0f;  // <arch>.rope.freq_base
    float rope_freq_scale = 1.0f;     // 1 / <arch>.rope.scaling.factor for linear scaling, else 1
    RopeType rope_type = RopeType::Norm;
    bool qkv_bias = false;  // the architecture requires attn_{q,k,v}.bias

    int64_t n_embd_q() const { return n_head * head_dim; }      // rows of attn_q
    int64_t n_embd_kv() const { return n_head_kv * head_dim; }  // rows of attn_k / attn_v
};

// "llama, mistral, qwen2": for messages.
std::string supported_architectures();

// Reads and validates the hyper-parameters of `file`.
HParams read_hparams(const gguf::File& file);

}  // namespace qrt::model
