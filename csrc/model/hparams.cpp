#include "model/hparams.h"

#include <cmath>
#include <optional>
#include <string_view>

#include "errors.h"

namespace qrt::model {

namespace {

using gguf::Value;
using gguf::ValueType;

// Limits that keep every product of two sizes far from int64 overflow. Real models are well inside
// (vocabularies ~256k, embeddings ~16k, contexts ~1M); shapes must also match tensors inside the file.
constexpr int64_t kMaxDim = int64_t(1) << 24;
constexpr int64_t kMaxLayers = 4096;

struct Architecture {
    const char* name;
    RopeType rope_type;
    bool qkv_bias;
};

constexpr Architecture kArchitectures[] = {
    {"llama", RopeType::Norm, false},   {"mistral", RopeType::Norm, false}, {"qwen2", RopeType::Neox, true},
    {"qwen3", RopeType::Neox, false},   {"gemma3", RopeType::Neox, false},  {"phi3", RopeType::Neox, false},
    {"smollm3", RopeType::Norm, false}, {"granite", RopeType::Norm, false},
};

class MetadataReader {
  public:
    explicit MetadataReader(const gguf::File& f) : f_(f) {}

    [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
        throw FormatError(f_.path() + ": metadata: " + key + ": " + problem);
    }

    const Value* find(const std::string& key, bool required) const {
        const Value* v = f_.find(key);
        if (!v && required) throw FormatError(f_.path() + ": metadata: missing key '" + key + "'");
        return v;
    }

    // Element i of an integer value of any width, as int64 (u64 values above INT64_MAX fail the range check).
    int64_t int_at(const std::string& key, const Value& v, uint64_t i) const {
        switch (v.element_type) {
            case ValueType::UINT8:
                return v.at<uint8_t>(i);
            case ValueType::INT8:
                return v.at<int8_t>(i);
            case ValueType::UINT16:
                return v.at<uint16_t>(i);
            case ValueType::INT16:
                return v.at<int16_t>(i);
            case ValueType::UINT32:
                return v.at<uint32_t>(i);
            case ValueType::INT32:
                return v.at<int32_t>(i);
            case ValueType::INT64:
                return v.at<int64_t>(i);
            case ValueType::UINT64: {
                const uint64_t u = v.at<uint64_t>(i);
                return u > uint64_t(INT64_MAX) ? -1 : int64_t(u);
            }
            default:
                fail(key, std::string("has type ") + type_name(v) + ", expected an integer");
        }
    }

    // An integer key in [lo, hi]. A per-layer array is accepted when all its elements are equal (qrt has
    // no per-layer head counts or FFN sizes yet).
    std::optional<int64_t> integer(const std::string& key, bool required, int64_t lo, int64_t hi) const {
        const Value* v = find(key, required);
        if (!v) return std::nullopt;
        if (v->count == 0) fail(key, "is an empty array");
        const int64_t x = int_at(key, *v, 0);
        for (uint64_t i = 1; i < v->count; ++i)
            if (int_at(key, *v, i) != x)
                throw UnsupportedError(f_.path() + ": metadata: " + key +
                                       ": per-layer values differ; qrt supports one value for all layers");
        if (x < lo || x > hi)
            fail(key, "value " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
        return x;
    }

    // A float key (FLOAT32 or FLOAT64) that must be finite and > 0.
    std::optional<float> positive_float(const std::string& key, bool required) const {
        const Value* v = find(key, required);
        if (!v) return std::nullopt;
        if (v->is_array()) fail(key, "is an array, expected a float");
        double x;
        if (v->type == ValueType::FLOAT32)
            x = v->at<float>();
        else if (v->type == ValueType::FLOAT64)
            x = v->at<double>();
        else
            fail(key, std::string("has type ") + type_name(*v) + ", expected a float");
        if (!std::isfinite(x) || x <= 0 || x > 3.0e38)
            fail(key, "value " + std::to_string(x) + " must be > 0");
        return float(x);
    }

    // A float key that must be finite (any sign).
    std::optional<float> finite_float(const std::string& key) const {
        const Value* v = find(key, false);
        if (!v) return std::nullopt;
        double x;
        if (!v->is_array() && v->type == ValueType::FLOAT32)
            x = v->at<float>();
        else if (!v->is_array() && v->type == ValueType::FLOAT64)
            x = v->at<double>();
        else
            fail(key, std::string("has type ") + type_name(*v) + ", expected a float");
        if (!std::isfinite(x) || std::fabs(x) > 3.0e38)
            fail(key, "value " + std::to_string(x) + " is not finite");
        return float(x);
    }

    std::optional<bool> boolean(const std::string& key) const {
        const Value* v = find(key, false);
        if (!v) return std::nullopt;
        if (v->is_array() || v->type != ValueType::BOOL)
            fail(key, std::string("has type ") + type_name(*v) + ", expected BOOL");
        return v->at<uint8_t>() != 0;
    }

    std::optional<std::string> string(const std::string& key, bool required) const {
        const Value* v = find(key, required);
        if (!v) return std::nullopt;
        if (v->type != ValueType::STRING)
            fail(key, std::string("has type ") + type_name(*v) + ", expected STRING");
        return std::string(v->str());
    }

    static std::string type_name(const Value& v) {
        if (v.is_array()) return std::string("ARRAY of ") + gguf::value_type_name(v.element_type);
        return gguf::value_type_name(v.type);
    }

  private:
    const gguf::File& f_;
};

}  // namespace

std::string supported_architectures() {
    std::string s;
    for (const auto& a : kArchitectures) s += std::string(s.empty() ? "" : ", ") + a.name;
    return s;
}

HParams read_hparams(const gguf::File& file) {
    const MetadataReader md(file);
    HParams hp;
    hp.arch = *md.string("general.architecture", true);
    const Architecture* arch = nullptr;
    for (const auto& a : kArchitectures)
        if (hp.arch == a.name) arch = &a;
    if (!arch)
        throw UnsupportedError(file.path() + ": architecture '" + hp.arch +
                               "' is not supported; supported: " + supported_architectures());
    hp.rope_type = arch->rope_type;
    hp.qkv_bias = arch->qkv_bias;
    const std::string p = hp.arch + ".";

    hp.n_ctx_train = *md.integer(p + "context_length", true, 1, INT32_MAX);
    hp.n_embd = *md.integer(p + "embedding_length", true, 1, kMaxDim);
    hp.n_layer = *md.integer(p + "block_count", true, 1, kMaxLayers);
    hp.n_ff = *md.integer(p + "feed_forward_length", true, 1, kMaxDim);
    hp.n_head = *md.integer(p + "attention.head_count", true, 1, kMaxDim);
    hp.n_head_kv = md.integer(p + "attention.head_count_kv", false, 1, kMaxDim).value_or(hp.n_head);
    if (hp.n_head % hp.n_head_kv != 0)
        md.fail(p + "attention.head_count_kv", "head_count " + std::to_string(hp.n_head) +
                                                   " is not a multiple of head_count_kv " +
                                                   std::to_string(hp.n_head_kv));

    if (auto k = md.integer(p + "attention.key_length", false, 1, kMaxDim)) {
        hp.head_dim = *k;
    } else {
        if (hp.n_embd % hp.n_head != 0)
            md.fail(p + "attention.head_count", "embedding_length " + std::to_string(hp.n_embd) +
                                                    " is not a multiple of head_count " +
                                                    std::to_string(hp.n_head));
        hp.head_dim = hp.n_embd / hp.n_head;
    }
    if (hp.head_dim % 2 != 0)
        md.fail(p + "attention.key_length", "head dimension " + std::to_string(hp.head_dim) +
                                                " is odd; RoPE rotates pairs of dimensions");
    if (hp.n_head * hp.head_dim > kMaxDim)
        md.fail(p + "attention.head_count", "head_count x head dimension is out of range");
    if (auto v = md.integer(p + "attention.value_length", false, 1, kMaxDim); v && *v != hp.head_dim)
        throw UnsupportedError(file.path() + ": metadata: " + p + "attention.value_length " +
                               std::to_string(*v) + " differs from key_length " +
                               std::to_string(hp.head_dim));
    // Partial rotary (phi3's partial_rotary_factor) rotates the leading n_rot dimensions of each head; the
    // NORM pairing of the other architectures assumes whole heads.
    hp.n_rot = md.integer(p + "rope.dimension_count", false, 1, kMaxDim).value_or(hp.head_dim);
    if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
        md.fail(p + "rope.dimension_count", "value " + std::to_string(hp.n_rot) +
                                                " must be even and at most the head dimension " +
                                                std::to_string(hp.head_dim));
    if (hp.n_rot != hp.head_dim && hp.rope_type != RopeType::Neox)
        throw UnsupportedError(file.path() + ": metadata: " + p + "rope.dimension_count " +
                               std::to_string(hp.n_rot) + " differs from the head dimension " +
                               std::to_string(hp.head_dim) +
                               " (partial RoPE is supported for NEOX RoPE only)");

    hp.rms_eps = *md.positive_float(p + "attention.layer_norm_rms_epsilon", true);
    hp.rope_freq_base = md.positive_float(p + "rope.freq_base", false).value_or(10000.0f);

    // RoPE scaling (llama.cpp's llama_model_base::load_hparams): linear divides positions by the factor (the
    // old key rope.scale_linear holds it directly); longrope (phi3) takes its frequency factors from the
    // rope_factors_long/short tensors and scales cos and sin by attn_factor; none ignores the factor.
    float factor = md.positive_float(p + "rope.scale_linear", false).value_or(1.0f);
    factor = md.positive_float(p + "rope.scaling.factor", false).value_or(factor);
    if (auto type = md.string(p + "rope.scaling.type", false)) {
        if (*type == "none" || *type == "longrope") {
            factor = 1.0f;
        } else if (*type != "linear") {
            throw UnsupportedError(file.path() + ": metadata: " + p + "rope.scaling.type '" + *type +
                                   "' is not supported (supported: none, linear, longrope)");
        }
    }
    hp.rope_freq_scale = 1.0f / factor;
    hp.rope_attn_factor = md.positive_float(p + "rope.scaling.attn_factor", false).value_or(1.0f);
    hp.n_ctx_orig =
        md.integer(p + "rope.scaling.original_context_length", false, 1, INT32_MAX).value_or(hp.n_ctx_train);
    if (auto scale = md.positive_float(p + "attention.scale", false))
        hp.attention_scale = *scale;
    else
        hp.attention_scale = 1.0f / std::sqrt(float(hp.head_dim));

    if (hp.arch == "qwen3") hp.qk_norm = true;
    if (hp.arch == "smollm3") hp.n_no_rope_step = 4;
    if (hp.arch == "phi3") hp.fused_qkv_ffn = true;
    if (hp.arch == "granite") {  // llama.cpp: logit_scale required, the others optional
        hp.logit_scale = *md.positive_float(p + "logit_scale", true);
        hp.embedding_scale = md.positive_float(p + "embedding_scale", false).value_or(1.0f);
        hp.residual_scale = md.positive_float(p + "residual_scale", false).value_or(1.0f);
        if (md.boolean(p + "rope.scaling.finetuned").value_or(true) == false)
            throw UnsupportedError(file.path() + ": metadata: " + p +
                                   "rope.scaling.finetuned is false (granite without RoPE is not supported)");
    }
    if (hp.arch == "gemma3") {
        hp.qk_norm = hp.post_norms = true;
        hp.ffn_act = FfnActivation::GeluTanh;
        hp.embedding_scale = std::sqrt(float(hp.n_embd));
        hp.final_logit_softcap = md.finite_float(p + "final_logit_softcapping").value_or(0.0f);
        if (hp.final_logit_softcap < 0) md.fail(p + "final_logit_softcapping", "must be >= 0");
        // Query scale 1/sqrt(head_dim), as llama.cpp takes it for every size but 27B, whose checkpoint says
        // query_pre_attn_scalar = n_embd / n_head: both are 1/sqrt(query_pre_attn_scalar).
        hp.attention_scale = hp.n_layer == 62 ? 1.0f / std::sqrt(float(hp.n_embd / hp.n_head))
                                              : 1.0f / std::sqrt(float(hp.head_dim));
        hp.n_swa = md.integer(p + "attention.sliding_window", false, 0, INT32_MAX).value_or(0);
        if (hp.n_swa > 0) {
            hp.swa_layers.assign(size_t(hp.n_layer), 0);
            const std::string pattern_key = p + "attention.sliding_window_pattern";
            const Value* pattern = md.find(pattern_key, false);
            if (pattern && pattern->is_array()) {  // one bool per layer
                if (pattern->element_type != ValueType::BOOL || pattern->count != uint64_t(hp.n_layer))
                    md.fail(pattern_key, "expected an array of " + std::to_string(hp.n_layer) + " BOOLs");
                for (int64_t il = 0; il < hp.n_layer; ++il)
                    hp.swa_layers[size_t(il)] = pattern->at<uint8_t>(uint64_t(il)) != 0;
            } else {  // every n-th layer global (llama_hparams::set_swa_pattern, dense last)
                const int64_t n = md.integer(pattern_key, false, 0, kMaxLayers).value_or(6);
                for (int64_t il = 0; il < hp.n_layer; ++il)
                    hp.swa_layers[size_t(il)] = n == 0 || il % n < n - 1;
            }
            hp.rope_freq_base_swa =
                md.positive_float(p + "rope.freq_base_swa", false)
                    .value_or(md.positive_float(p + "rope.local.freq_base", false).value_or(10000.0f));
        }
    }

    // Vocabulary size: the key, else the tokenizer's token count; 0 here means "take token_embd's rows"
    // (weights.cpp checks token_embd against whichever is known).
    if (auto n = md.integer(p + "vocab_size", false, 1, INT32_MAX)) {
        hp.n_vocab = *n;
    } else if (const gguf::Value* tokens = file.find("tokenizer.ggml.tokens")) {
        if (tokens->count < 1 || tokens->count > uint64_t(INT32_MAX))
            md.fail("tokenizer.ggml.tokens", "has " + std::to_string(tokens->count) + " tokens");
        hp.n_vocab = int64_t(tokens->count);
    } else if (const gguf::TensorInfo* t = file.find_tensor("token_embd.weight")) {
        hp.n_vocab = t->ne[1];
    } else {
        throw FormatError(file.path() + ": missing tensor 'token_embd.weight'");
    }
    if (hp.n_vocab > INT32_MAX) md.fail(p + "vocab_size", "is out of range");
    return hp;
}

}  // namespace qrt::model
