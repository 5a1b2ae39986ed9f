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
    {"llama", RopeType::Norm, false},
    {"mistral", RopeType::Norm, false},
    {"qwen2", RopeType::Neox, true},
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
    if (auto n_rot = md.integer(p + "rope.dimension_count", false, 1, kMaxDim);
        n_rot && *n_rot != hp.head_dim)
        throw UnsupportedError(file.path() + ": metadata: " + p + "rope.dimension_count " +
                               std::to_string(*n_rot) + " differs from the head dimension " +
                               std::to_string(hp.head_dim) + " (partial RoPE is not supported)");

    hp.rms_eps = *md.positive_float(p + "attention.layer_norm_rms_epsilon", true);
    hp.rope_freq_base = md.positive_float(p + "rope.freq_base", false).value_or(10000.0f);

    // RoPE scaling: none or linear (positions divided by the factor). The old key rope.scale_linear holds
    // the factor directly.
    float factor = md.positive_float(p + "rope.scale_linear", false).value_or(1.0f);
    if (auto type = md.string(p + "rope.scaling.type", false)) {
        if (*type == "linear") {
            factor = md.positive_float(p + "rope.scaling.factor", false).value_or(factor);
        } else if (*type != "none") {
            throw UnsupportedError(file.path() + ": metadata: " + p + "rope.scaling.type '" + *type +
                                   "' is not supported (supported: none, linear)");
        }
    }
    hp.rope_freq_scale = 1.0f / factor;

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
