// Hyper-parameters of a llama-family model, read from GGUF metadata and validated.
//
// Keys are "<arch>.<name>" (FORMATS.md §1.3), arch = general.architecture. Supported architectures and
// what distinguishes them (llama.cpp's src/models/<arch>.cpp, llama_model_rope_type, load_arch_tensors):
//
//   llama    RoPE on adjacent pairs (LLAMA_ROPE_TYPE_NORM: the converter permuted Q/K rows, §1.4);
//            Q/K/V/O biases optional; Llama 3.1+ frequency divisors as rope_freqs.weight.
//            llama.cpp converts Mistral 7B-style checkpoints to "llama".
//   mistral  the llama graph under another name (files from converters that call it "mistral")
//   qwen2    RoPE on the two halves of each head (LLAMA_ROPE_TYPE_NEOX, no permutation); Q/K/V biases
//            required
//   qwen3    NEOX RoPE; per-head RMSNorm of q and k before RoPE (attn_q_norm, attn_k_norm)
//   gemma3   NEOX RoPE; embeddings x sqrt(n_embd); q/k norms; a norm after attention and after the FFN,
//            before each residual add; GELU(tanh)-gated FFN; sliding-window layers (all but every
//            6th, or the attention.sliding_window_pattern array) with their own RoPE base and no scaling;
//            logits soft-capped when final_logit_softcapping is present. Norm weights hold (1 + w): the
//            converter folded the offset in.
//   phi3     NEOX RoPE on the first rope.dimension_count dims; fused attn_qkv and ffn_up (gate | up);
//            LongRoPE: rope_factors_long/short chosen by n_ctx against the original context, cos/sin
//            scaled by rope.scaling.attn_factor
//   smollm3  the llama graph, RoPE skipped on every 4th layer
//   granite  the llama graph with embedding, residual, attention and logit scales
//
// Every value the forward relies on is checked here, so the code behind it can assume: n_layer, n_embd,
// n_head, n_head_kv, n_ff, head_dim >= 1; n_head % n_head_kv == 0; n_rot even and <= head_dim; eps,
// freq_base, freq_scale positive and finite; all sizes small enough that products of two of them fit
// comfortably in int64. Failures throw FormatError ("<file>: metadata: ...") for missing, mistyped or
// out-of-range keys and UnsupportedError for valid settings qrt does not implement.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace qrt::model {

enum class RopeType {
    Norm,  // rotate pairs (2i, 2i+1)
    Neox,  // rotate pairs (i, i + head_dim/2)
};

enum class FfnActivation {
    Silu,      // silu(gate) * up
    GeluTanh,  // gelu(gate) * up, tanh approximation (PyTorch's approximate="tanh")
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
    int64_t n_rot = 0;      // <arch>.rope.dimension_count (default head_dim): the leading dims RoPE rotates
    float rope_attn_factor = 1.0f;  // <arch>.rope.scaling.attn_factor: scales RoPE's cos and sin (LongRoPE)
    int64_t n_ctx_orig = 0;  // <arch>.rope.scaling.original_context_length (default n_ctx_train): LongRoPE's
                             // long factors apply to contexts beyond it
    float attention_scale = 0;   // softmax(scale q.k): <arch>.attention.scale, else 1 / sqrt(head_dim)
    int64_t n_no_rope_step = 0;  // > 0: layers il with (il + 1) % step == 0 skip RoPE (smollm3: 4)

    // gemma3
    bool qk_norm = false;     // attn_q_norm, attn_k_norm: RMSNorm of each head of q and k before RoPE
    bool post_norms = false;  // post_attention_norm, post_ffw_norm before each residual add
    FfnActivation ffn_act = FfnActivation::Silu;
    int64_t n_swa = 0;  // <arch>.attention.sliding_window: sliding-window layers see the last n_swa tokens
    std::vector<uint8_t> swa_layers;      // [n_layer] 1: a sliding-window layer (empty when n_swa is 0)
    float rope_freq_base_swa = 10000.0f;  // <arch>.rope.freq_base_swa (or rope.local.freq_base); SWA layers
                                          // take no scaling
    float final_logit_softcap = 0;        // <arch>.final_logit_softcapping: logits = c * tanh(logits / c)

    // granite (1 where absent): x = token_embd * embedding_scale; each sublayer's output * residual_scale
    // before its residual add; logits / logit_scale
    float embedding_scale = 1.0f;
    float residual_scale = 1.0f;
    float logit_scale = 1.0f;

    // phi3: attn_qkv and ffn_up hold q|k|v and gate|up (weights.cpp splits them into row views)
    bool fused_qkv_ffn = false;

    int64_t n_embd_q() const { return n_head * head_dim; }      // rows of attn_q
    int64_t n_embd_kv() const { return n_head_kv * head_dim; }  // rows of attn_k / attn_v
    bool is_swa(int64_t layer) const { return n_swa > 0 && swa_layers[size_t(layer)]; }
    bool has_swa() const { return n_swa > 0; }
    bool rope_on(int64_t layer) const { return n_no_rope_step == 0 || (layer + 1) % n_no_rope_step != 0; }
    // The llama / mistral / qwen2 graph exactly (what backends written for it before the others can run).
    bool llama_graph() const { return arch == "llama" || arch == "mistral" || arch == "qwen2"; }
};

// "llama, mistral, qwen2, ...": for messages.
std::string supported_architectures();

// Reads and validates the hyper-parameters of `file`.
HParams read_hparams(const gguf::File& file);

}  // namespace qrt::model
