// qrt._C.ImatrixCollector and imatrix_eval: the engine side of qrt-imatrix (model/imatrix.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/register.h"
#include "engine/session.h"
#include "model/imatrix.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace qrt::bindings {

namespace {

py::dict stats(const model::ImatrixCollector& c) {
    py::dict out;
    for (const auto& [name, e] : c.stats()) {
        py::array_t<float> sums(py::ssize_t(e.sums.size()));
        std::copy(e.sums.begin(), e.sums.end(), sums.mutable_data());
        out[py::str(name)] = py::make_tuple(sums, e.count);
    }
    return out;
}

// Evaluates `ids` as a fresh sequence 0 with the collector observing every matrix product; the cache is
// cleared before and after. Logits of every token are computed only when the collector wants the output
// head (llama-imatrix asks for all of them; the blocks see every token either way).
void imatrix_eval(Session& s, py::array_t<int32_t, py::array::c_style | py::array::forcecast> ids,
                  model::ImatrixCollector& c, bool all_logits) {
    if (ids.ndim() != 1 || ids.size() == 0)
        throw py::value_error("imatrix_eval: expected a 1-D array of ids");
    const int64_t n = ids.size();
    if (n > s.params().n_ctx)
        throw py::value_error("chunk has " + std::to_string(n) + " tokens, context is " +
                              std::to_string(s.params().n_ctx));
    const int32_t* p = ids.data();
    for (int64_t i = 0; i < n; ++i)
        if (p[i] < 0 || p[i] >= s.hparams().n_vocab)
            throw py::value_error("token id " + std::to_string(p[i]) + " at index " + std::to_string(i) +
                                  " is out of range [0, " + std::to_string(s.hparams().n_vocab) + ")");
    if (s.device()) throw py::value_error("imatrix_eval: the model must run on the CPU only (gpu_layers=0)");
    std::vector<int32_t> tokens(p, p + n);
    std::vector<float> logits(size_t(all_logits ? n : 1) * size_t(s.hparams().n_vocab));
    py::gil_scoped_release release;
    model::ScopedMatmulObserver observe(&c);
    s.clear(0);
    try {
        s.eval(tokens, {}, 0, logits.data(), all_logits);
    } catch (...) {
        s.clear(0);
        throw;
    }
    s.clear(0);
}

}  // namespace

void register_imatrix(py::module_& m) {
    py::class_<model::ImatrixCollector>(
        m, "ImatrixCollector",
        "Σx² per input column and token counts of every block matrix (and output.weight with "
        "process_output), as llama-imatrix collects them.")
        .def(py::init<bool>(), "process_output"_a = false)
        .def("stats", &stats, "{matrix name: (float32 Σx² per input column, tokens seen)}");
    m.def("imatrix_eval", &imatrix_eval, "model"_a, "ids"_a, "collector"_a, "all_logits"_a = false,
          "Evaluate ids as a fresh sequence while the collector observes every matrix product.");
}

}  // namespace qrt::bindings
