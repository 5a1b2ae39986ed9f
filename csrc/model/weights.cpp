#include "model/weights.h"

#include <type_traits>
#include <unordered_set>

#include "errors.h"
#include "kernels/dispatch.h"

namespace qrt::model {

namespace {

std::string shape_str(const int64_t* ne, size_t n) {
    std::string s = "[";
    for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

void check_shape(const gguf::File& file, const gguf::TensorInfo& t, const std::vector<int64_t>& expected) {
    bool ok = true;
    for (uint32_t d = 0; d < gguf::kMaxDims; ++d) {
        const int64_t want = d < expected.size() ? expected[d] : 1;
        ok = ok && t.ne[d] == want;
    }
    if (!ok)
        throw FormatError(file.path() + ": tensor '" + t.name + "' has shape " + shape_str(t.ne, t.n_dims) +
                          ", expected " + shape_str(expected.data(), expected.size()) +
                          " from the metadata (ggml order)");
}

void bind(const gguf::File& file, const gguf::TensorInfo& t, Matrix& m) {
    m.name = t.name;
    m.data = file.tensor_data(t);
    m.type = t.type;
    m.cols = t.ne[0];
    m.rows = t.ne[1];
    m.row_bytes = uint64_t(m.cols / t.type->block_size) * t.type->type_size;
    m.nbytes = t.nbytes;
    m.dequantize_row_fn = kernels::dequantize_row(t.type->id);
}

void bind(const gguf::File& file, const gguf::TensorInfo& t, Vector& v) {
    v.resize(size_t(t.ne[0]));
    t.type->dequantize_rows(file.tensor_data(t), t.ne[0], 1, 0, 1, v.data());
}

// Rows [r0, r0 + n) of m as a matrix of their own (phi3's fused tensors), named `name`.
Matrix row_view(const Matrix& m, int64_t r0, int64_t n, const std::string& name) {
    Matrix v = m;
    v.name = name;
    v.data = m.data + uint64_t(r0) * m.row_bytes;
    v.rows = n;
    v.nbytes = uint64_t(n) * m.row_bytes;
    return v;
}

}  // namespace

void Matrix::dequantize_row(int64_t r, float* out) const {
    if (dequantize_row_fn)
        dequantize_row_fn(data + uint64_t(r) * row_bytes, out, cols);
    else
        type->dequantize_rows(data, cols, rows, r, r + 1, out);
}

Weights bind_weights(const gguf::File& file, const HParams& hp) {
    Weights w;
    std::unordered_set<std::string> used;
    for_each_tensor(hp, w,
                    [&](const std::string& name, const std::vector<int64_t>& ne, Need need, auto& slot) {
                        used.insert(name);
                        const gguf::TensorInfo* t = file.find_tensor(name);
                        if (!t) {
                            if (need == Need::Required)
                                throw FormatError(file.path() + ": missing tensor '" + name + "'");
                            return;
                        }
                        check_shape(file, *t, ne);
                        bind(file, *t, slot);
                    });
    for (const auto& t : file.tensors())
        if (!used.count(t.name))
            throw UnsupportedError(file.path() + ": tensor '" + t.name + "' is not used by qrt's " + hp.arch +
                                   " forward (ignoring it would compute a different model)");
    if (!w.output.present()) w.output = w.token_embd;  // tied embeddings
    if (hp.fused_qkv_ffn) {
        const int64_t n_q = hp.n_embd_q(), n_kv = hp.n_embd_kv(), n_ff = hp.n_ff;
        for (LayerWeights& l : w.layers) {
            for (const Matrix* m : {&l.attn_qkv, &l.ffn_gate_up})
                if (!m->type->dequantize_row)  // NF4: per-tensor state after the blocks
                    throw UnsupportedError(file.path() + ": tensor '" + m->name + "' is " + m->type->name +
                                           ", whose rows are not self-contained; qrt splits fused tensors "
                                           "by rows");
            // "attn_qkv" in the names keeps them on the two-pass activations of attention inputs
            // (model/matmul.h default_activations)
            l.attn_q = row_view(l.attn_qkv, 0, n_q, l.attn_qkv.name + "[q]");
            l.attn_k = row_view(l.attn_qkv, n_q, n_kv, l.attn_qkv.name + "[k]");
            l.attn_v = row_view(l.attn_qkv, n_q + n_kv, n_kv, l.attn_qkv.name + "[v]");
            l.ffn_gate = row_view(l.ffn_gate_up, 0, n_ff, l.ffn_gate_up.name + "[gate]");
            l.ffn_up = row_view(l.ffn_gate_up, n_ff, n_ff, l.ffn_gate_up.name + "[up]");
            l.attn_qkv = Matrix{};  // the views are what the forward, packing and offload see
            l.ffn_gate_up = Matrix{};
        }
    }
    return w;
}

Model::Model(const std::string& path) : file(path), hp(read_hparams(file)), w(bind_weights(file, hp)) {}

}  // namespace qrt::model
