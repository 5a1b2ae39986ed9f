// qrt._C.Model: a GGUF model with its paged KV cache, computing logits (engine/session.h).
//
// Token ids arrive as any 1-D integer array-like and are checked here (ValueError for ids outside
// [0, n_vocab), TypeError for non-integers); the GIL is released while computing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "bindings/register.h"
#include "engine/session.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace qrt::bindings {

namespace {

// A 1-D integer array-like of ids in [0, hi), as int32; `what` names one ("token id", "sequence id").
std::vector<int32_t> checked_ids(const py::object& ids, const std::string& what, int64_t hi) {
    py::array a = py::module_::import("numpy").attr("asarray")(ids);
    if (a.ndim() != 1)
        throw py::value_error(what + "s must be a 1-D array, got " + std::to_string(a.ndim()) +
                              " dimensions");
    if (a.size() == 0) throw py::value_error("no tokens to evaluate");
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw py::type_error(what + "s must be integers, got dtype " + std::string(py::str(a.dtype())));
    const auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    if (kind == 'u' && a.dtype().itemsize() == 8) {
        // uint64 above INT64_MAX would wrap to negative values: still out of range, but say what it was.
        const auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        for (py::ssize_t i = 0; i < u.size(); ++i)
            if (u.data()[i] > uint64_t(INT64_MAX))
                throw py::value_error(what + " " + std::to_string(u.data()[i]) + " at index " +
                                      std::to_string(i) + " is out of range [0, " + std::to_string(hi) + ")");
    }
    std::vector<int32_t> out(size_t(wide.size()));
    for (py::ssize_t i = 0; i < wide.size(); ++i) {
        const int64_t id = wide.data()[i];
        if (id < 0 || id >= hi)
            throw py::value_error(what + " " + std::to_string(id) + " at index " + std::to_string(i) +
                                  " is out of range [0, " + std::to_string(hi) + ")");
        out[size_t(i)] = int32_t(id);
    }
    return out;
}

std::vector<int32_t> token_ids(const Session& s, const py::object& ids) {
    return checked_ids(ids, "token id", s.hparams().n_vocab);
}

py::array_t<float> logits(Session& s, const py::object& ids) {
    const std::vector<int32_t> tokens = token_ids(s, ids);
    const py::ssize_t n = py::ssize_t(tokens.size()), n_vocab = py::ssize_t(s.hparams().n_vocab);
    if (n > s.params().n_ctx)
        throw py::value_error("prompt has " + std::to_string(n) + " tokens, context is " +
                              std::to_string(s.params().n_ctx));
    py::array_t<float> out({n, n_vocab});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        s.clear(0);
        try {
            s.eval(tokens, {}, 0, dst, true);
        } catch (...) {
            s.clear(0);
            throw;
        }
        s.clear(0);
    }
    return out;
}

py::array_t<float> eval(Session& s, const py::object& ids, int seq_id, bool all_logits) {
    const std::vector<int32_t> tokens = token_ids(s, ids);
    const py::ssize_t n = py::ssize_t(tokens.size()), n_vocab = py::ssize_t(s.hparams().n_vocab);
    py::array_t<float> out = all_logits ? py::array_t<float>({n, n_vocab}) : py::array_t<float>(n_vocab);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        s.eval(tokens, {}, seq_id, dst, all_logits);
    }
    return out;
}

py::array_t<float> eval_batch(Session& s, const py::object& ids, const py::object& seq_ids, bool all_logits) {
    const std::vector<int32_t> tokens = token_ids(s, ids);
    const std::vector<int32_t> seqs = checked_ids(seq_ids, "sequence id", s.params().n_seq_max);
    if (seqs.size() != tokens.size())
        throw py::value_error("got " + std::to_string(tokens.size()) + " tokens but " +
                              std::to_string(seqs.size()) + " sequence ids");
    py::ssize_t n_rows = py::ssize_t(tokens.size());
    if (!all_logits) {
        std::vector<char> seen(size_t(s.params().n_seq_max), 0);
        n_rows = 0;
        for (int32_t q : seqs) n_rows += !std::exchange(seen[size_t(q)], 1);
    }
    py::array_t<float> out({n_rows, py::ssize_t(s.hparams().n_vocab)});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        s.eval_batch(tokens, seqs, dst, all_logits);
    }
    return out;
}

py::object offload(const Session& s) {
    const model::DevicePart* d = s.device();
    if (!d) return py::none();
    const model::Placement& p = d->placement();
    const model::DeviceMemory& m = d->memory();
    py::dict out;
    out["backend"] = d->backend();
    out["gpu_layers"] = p.n_device() + (p.head ? 1 : 0);
    out["first_layer"] = p.first;
    out["n_layer_device"] = p.n_device();
    out["head"] = p.head;
    out["weights_bytes"] = m.weights;
    out["kv_bytes"] = m.kv;
    out["work_bytes"] = m.work;
    out["total_bytes"] = m.total();
    out["free_bytes"] = d->free_bytes();
    out["weights_copied"] = d->owns_its_weights();
    return out;
}

py::list available_backends() {
    py::list out;
    for (const char* b : {"cuda", "cpu-test"})
        if (model::backend_available(b)) out.append(b);
    return out;
}

}  // namespace

void register_model(py::module_& m) {
    py::class_<Session>(
        m, "Model",
        "A llama-family GGUF model (llama, mistral, qwen2) with a paged KV cache for n_seq_max\n"
        "sequences of up to n_ctx tokens each, allocated up front (kv_bytes).")
        .def(py::init([](const std::string& path, int n_ctx, int n_threads, int n_seq_max, int n_batch,
                         int gpu_layers, const std::string& device, uint64_t device_free_bytes,
                         int n_kv_blocks, const std::string& kv_type_k, const std::string& kv_type_v) {
                 SessionParams p;
                 p.kv_type_k = kv_type_from_name(kv_type_k, "kv_type_k");
                 p.kv_type_v = kv_type_from_name(kv_type_v, "kv_type_v");
                 p.n_ctx = n_ctx;
                 p.n_threads = n_threads;
                 p.n_seq_max = n_seq_max;
                 p.n_batch = n_batch;
                 p.gpu_layers = gpu_layers;
                 p.device = device;
                 p.device_free_bytes = device_free_bytes;
                 p.n_kv_blocks = n_kv_blocks;
                 return new Session(path, p);
             }),
             "path"_a, "n_ctx"_a, "n_threads"_a = 0, "n_seq_max"_a = 1, "n_batch"_a = 512, "gpu_layers"_a = 0,
             "device"_a = "", "device_free_bytes"_a = 0, "n_kv_blocks"_a = 0, "kv_type_k"_a = "f16",
             "kv_type_v"_a = "f16", py::call_guard<py::gil_scoped_release>(),
             "Loads the model. n_threads 0 = one per hardware thread. FormatError / UnsupportedError for\n"
             "bad or unsupported files, MemoryError (with the bytes) when the KV cache does not fit.\n"
             "gpu_layers N puts the last N layers (N > n_layer: and the output head) on the backend\n"
             "`device` ('cuda', or 'cpu-test': a second CPU device, for tests only); -1: everything, -2:\n"
             "as many as fit in the device's free memory (device_free_bytes != 0 stands in for it).\n"
             "MemoryError (with the bytes) when the layers asked for do not fit. n_kv_blocks: KV pool\n"
             "blocks of 16 tokens shared by all sequences (0: n_seq_max * ceil(n_ctx / 16)). kv_type_k,\n"
             "kv_type_v: the cache's types for K and V, 'f16', 'q8_0' or 'q4_0' (ValueError otherwise).")
        .def("logits", &logits, "ids"_a,
             "Logits [len(ids), n_vocab] of every position of `ids` in a fresh context. Uses (and clears)\n"
             "sequence 0.")
        .def("eval", &eval, "ids"_a, "seq_id"_a = 0, "all_logits"_a = false,
             "Appends `ids` to sequence seq_id's cache and returns the last token's logits [n_vocab], or\n"
             "[len(ids), n_vocab] with all_logits.")
        .def("eval_batch", &eval_batch, "ids"_a, "seq_ids"_a, "all_logits"_a = false,
             "Evaluates a batch mixing sequences in one forward pass: ids[i] is appended to sequence\n"
             "seq_ids[i] (after its cached tokens and its earlier tokens in ids, causal within each\n"
             "sequence). Returns float32 [n_seq_in_batch, n_vocab]: the logits of each distinct sequence's\n"
             "last token, rows in the order those last tokens appear in ids (the order of first appearance\n"
             "when each sequence's tokens are contiguous or there is one token per sequence); with\n"
             "all_logits, [len(ids), n_vocab]. ValueError (nothing appended) for ids or seq_ids out of\n"
             "range, mismatched lengths, or a sequence that would exceed n_ctx.")
        .def("clear", &Session::clear, "seq_id"_a = 0, py::call_guard<py::gil_scoped_release>(),
             "Forgets sequence seq_id, returning its cache blocks to the pool.")
        .def("truncate", &Session::seq_keep, "seq_id"_a, "n_keep"_a, py::call_guard<py::gil_scoped_release>(),
             "Keeps the first n_keep tokens of sequence seq_id.")
        .def("seq_len", &Session::seq_len, "seq_id"_a = 0, py::call_guard<py::gil_scoped_release>(),
             "Tokens in sequence seq_id's cache.")
        .def_property_readonly("path", [](const Session& s) { return s.model().file.path(); })
        .def_property_readonly("arch", [](const Session& s) { return s.hparams().arch; })
        .def_property_readonly("n_vocab", [](const Session& s) { return s.hparams().n_vocab; })
        .def_property_readonly("n_ctx", [](const Session& s) { return s.params().n_ctx; })
        .def_property_readonly("n_ctx_train", [](const Session& s) { return s.hparams().n_ctx_train; })
        .def_property_readonly("n_embd", [](const Session& s) { return s.hparams().n_embd; })
        .def_property_readonly("n_layer", [](const Session& s) { return s.hparams().n_layer; })
        .def_property_readonly("n_head", [](const Session& s) { return s.hparams().n_head; })
        .def_property_readonly("n_head_kv", [](const Session& s) { return s.hparams().n_head_kv; })
        .def_property_readonly("head_dim", [](const Session& s) { return s.hparams().head_dim; })
        .def_property_readonly("n_ff", [](const Session& s) { return s.hparams().n_ff; })
        .def_property_readonly(
            "rope_type",
            [](const Session& s) { return s.hparams().rope_type == model::RopeType::Neox ? "neox" : "norm"; })
        .def_property_readonly("n_seq_max", [](const Session& s) { return s.params().n_seq_max; })
        .def_property_readonly("n_threads", &Session::n_threads)
        .def_property_readonly("n_batch", [](const Session& s) { return s.params().n_batch; })
        .def_property_readonly("kv_bytes", &Session::kv_bytes)
        .def_property_readonly(
            "kv_type_k", [](const Session& s) { return std::string(kv_type_name(s.params().kv_type_k)); },
            "The KV cache's type for keys: 'f16', 'q8_0' or 'q4_0'.")
        .def_property_readonly(
            "kv_type_v", [](const Session& s) { return std::string(kv_type_name(s.params().kv_type_v)); },
            "The KV cache's type for values: 'f16', 'q8_0' or 'q4_0'.")
        .def_property_readonly("n_kv_blocks", &Session::n_kv_blocks, "Blocks of 16 tokens in the KV pool.")
        .def_property_readonly("n_free_kv_blocks", &Session::n_free_kv_blocks,
                               "Blocks of the KV pool no sequence holds.")
        .def_property_readonly(
            "sliding_window", [](const Session& s) { return s.hparams().n_swa; },
            "Tokens a sliding-window layer sees (gemma3), 0 when the model has none.")
        .def_property_readonly(
            "offload", &offload,
            "None when every layer runs on the CPU; else a dict: backend, gpu_layers (N as\n"
            "llama.cpp counts it), first_layer, n_layer_device, head (bool), weights_bytes,\n"
            "kv_bytes, work_bytes, total_bytes (device memory by part), free_bytes (before\n"
            "loading), weights_copied (no device layer reads the file mapping).");
    m.attr("DEVICE_MARGIN_BYTES") = model::kDeviceMarginBytes;  // what gpu_layers="auto" leaves free
    m.def("offload_backends", &available_backends,
          "The device backends that can run layers in this build on this machine ('cpu-test' is for tests).");
}

}  // namespace qrt::bindings
