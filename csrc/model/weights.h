// The tensors of a llama-family model, bound by name from a GGUF file and checked against the hparams.
//
// for_each_tensor() lists every tensor the forward can use exactly once, with its GGUF name, its
// expected shape in ggml order (ne0 = the contiguous/input dimension) and whether it must be present.
// Loading, shape checking and "unexpected tensor" detection all walk that one list.
//
// Matrices stay in the file's mapping in their own quant type (zero copy); 1-D tensors (norm weights,
// biases, rope_freqs) are small and are converted to fp32 vectors at load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/types.h"
#include "gguf/gguf.h"
#include "kernels/dispatch.h"
#include "model/hparams.h"

namespace qrt::model {

// A weight matrix in the mapping: `rows` rows of `cols` values (ggml ne = [cols, rows]); y = W x
// reads rows, so cols is the input size and rows the output size.
struct Matrix {
    std::string name;
    const uint8_t* data = nullptr;
    const TypeTraits* type = nullptr;
    int64_t cols = 0, rows = 0;
    uint64_t row_bytes = 0;
    DequantizeRowFn dequantize_row_fn = nullptr;  // the dispatched kernel; nullptr: use type->dequantize_rows
    uint64_t nbytes = 0;                          // the whole tensor (NF4: with its state after the blocks)
    // Rows [0, packed_rows) repacked for the active ISA's packed kernels (model/packing.h), in groups of
    // kernels::kPackRows rows packed_group_bytes apart; nullptr when the matrix is not packed.
    const uint8_t* packed = nullptr;
    int64_t packed_rows = 0;
    uint64_t packed_group_bytes = 0;
    const kernels::CpuKernels* packed_kernels = nullptr;  // pack, packed_gemm of the type

    bool present() const { return data != nullptr; }
    // out[cols] = row r as floats.
    void dequantize_row(int64_t r, float* out) const;
};

// A 1-D tensor converted to fp32; empty when an optional tensor is absent.
using Vector = std::vector<float>;

struct LayerWeights {
    Vector attn_norm;                                                // [n_embd]
    Matrix attn_q;                                                   // [n_embd] -> [n_head*head_dim]
    Matrix attn_k, attn_v;                                           // [n_embd] -> [n_head_kv*head_dim]
    Matrix attn_output;                                              // [n_head*head_dim] -> [n_embd]
    Vector attn_q_bias, attn_k_bias, attn_v_bias, attn_output_bias;  // optional (required for qwen2 q/k/v)
    Vector attn_q_norm, attn_k_norm;  // [head_dim]  per-head RMSNorm before RoPE (qwen3, gemma3)
    Vector post_attention_norm;       // [n_embd]  gemma3: norm of the attention output before its add
    Vector ffn_norm;                  // [n_embd]
    Matrix ffn_gate, ffn_up;          // [n_embd] -> [n_ff]
    Matrix ffn_down;                  // [n_ff] -> [n_embd]
    Vector post_ffw_norm;             // [n_embd]  gemma3: norm of the FFN output before its add
    // phi3's fused tensors as the file has them; bind_weights() makes attn_q/k/v and ffn_gate/up row views
    // of them.
    Matrix attn_qkv;     // [n_embd] -> [n_head*head_dim + 2*n_head_kv*head_dim]: q rows, k rows, v rows
    Matrix ffn_gate_up;  // [n_embd] -> [2*n_ff]: gate rows, then up rows (ggml_swiglu's halves)
};

struct Weights {
    Matrix token_embd;   // [n_embd] x n_vocab rows: row t is token t's embedding
    Vector output_norm;  // [n_embd]
    Matrix output;       // [n_embd] -> [n_vocab]; token_embd when the file has no output.weight (tied)
    Vector rope_freqs;   // [n_rot/2] frequency divisors (Llama 3.1 style); empty when absent
    Vector rope_factors_long, rope_factors_short;  // [n_rot/2] phi3 LongRoPE divisors; empty when absent
    std::vector<LayerWeights> layers;
};

enum class Need { Required, Optional };

// Calls fn(name, ne, need, slot) for every tensor the forward can use, where ne is the expected shape in
// ggml order (one or two dimensions) and slot a Matrix& or Vector& to bind it to.
template <typename Fn>
void for_each_tensor(const HParams& hp, Weights& w, Fn&& fn) {
    using Shape = std::vector<int64_t>;
    const int64_t n_embd = hp.n_embd, n_q = hp.n_embd_q(), n_kv = hp.n_embd_kv(), hd = hp.head_dim;
    const Need bias = hp.qkv_bias ? Need::Required : Need::Optional;
    const Need arch_norm = Need::Required;
    fn("token_embd.weight", Shape{n_embd, hp.n_vocab}, Need::Required, w.token_embd);
    fn("output_norm.weight", Shape{n_embd}, Need::Required, w.output_norm);
    fn("output.weight", Shape{n_embd, hp.n_vocab}, Need::Optional, w.output);
    fn("rope_freqs.weight", Shape{hp.n_rot / 2}, Need::Optional, w.rope_freqs);
    if (hp.arch == "phi3") {
        fn("rope_factors_long.weight", Shape{hp.n_rot / 2}, Need::Optional, w.rope_factors_long);
        fn("rope_factors_short.weight", Shape{hp.n_rot / 2}, Need::Optional, w.rope_factors_short);
    }
    w.layers.resize(size_t(hp.n_layer));
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        LayerWeights& l = w.layers[size_t(i)];
        const std::string b = "blk." + std::to_string(i) + ".";
        fn(b + "attn_norm.weight", Shape{n_embd}, Need::Required, l.attn_norm);
        if (hp.fused_qkv_ffn) {
            fn(b + "attn_qkv.weight", Shape{n_embd, n_q + 2 * n_kv}, Need::Required, l.attn_qkv);
        } else {
            fn(b + "attn_q.weight", Shape{n_embd, n_q}, Need::Required, l.attn_q);
            fn(b + "attn_k.weight", Shape{n_embd, n_kv}, Need::Required, l.attn_k);
            fn(b + "attn_v.weight", Shape{n_embd, n_kv}, Need::Required, l.attn_v);
            fn(b + "attn_q.bias", Shape{n_q}, bias, l.attn_q_bias);
            fn(b + "attn_k.bias", Shape{n_kv}, bias, l.attn_k_bias);
            fn(b + "attn_v.bias", Shape{n_kv}, bias, l.attn_v_bias);
        }
        fn(b + "attn_output.weight", Shape{n_q, n_embd}, Need::Required, l.attn_output);
        fn(b + "attn_output.bias", Shape{n_embd}, Need::Optional, l.attn_output_bias);
        if (hp.qk_norm) {
            fn(b + "attn_q_norm.weight", Shape{hd}, arch_norm, l.attn_q_norm);
            fn(b + "attn_k_norm.weight", Shape{hd}, arch_norm, l.attn_k_norm);
        }
        if (hp.post_norms) {
            fn(b + "post_attention_norm.weight", Shape{n_embd}, arch_norm, l.post_attention_norm);
            fn(b + "post_ffw_norm.weight", Shape{n_embd}, arch_norm, l.post_ffw_norm);
        }
        fn(b + "ffn_norm.weight", Shape{n_embd}, Need::Required, l.ffn_norm);
        if (hp.fused_qkv_ffn) {
            fn(b + "ffn_up.weight", Shape{n_embd, 2 * hp.n_ff}, Need::Required, l.ffn_gate_up);
        } else {
            fn(b + "ffn_gate.weight", Shape{n_embd, hp.n_ff}, Need::Required, l.ffn_gate);
            fn(b + "ffn_up.weight", Shape{n_embd, hp.n_ff}, Need::Required, l.ffn_up);
        }
        fn(b + "ffn_down.weight", Shape{hp.n_ff, n_embd}, Need::Required, l.ffn_down);
    }
}

// Binds and checks every tensor: missing required tensors and shape mismatches are FormatErrors naming
// the tensor with its expected and actual shape; a tensor the forward would not use is an
// UnsupportedError (ignoring it would compute a different model).
Weights bind_weights(const gguf::File& file, const HParams& hp);

// A loaded model: the mapped file, its hyper-parameters and its weights (views into the file).
// Not movable: the weights point into `file`.
struct Model {
    explicit Model(const std::string& path);
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    gguf::File file;
    HParams hp;
    Weights w;
};

}  // namespace qrt::model
