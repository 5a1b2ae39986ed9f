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
    return w;
}

Model::Model(const std::string& path) : file(path), hp(read_hparams(file)), w(bind_weights(file, hp)) {}

}  // namespace qrt::model
