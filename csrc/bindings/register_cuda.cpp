// qrt._C.cuda_test_*: single CUDA kernels on numpy data, for tests/test_cuda.py (marker gpu) to compare
// with the CPU reference. Present in every build so the stubs are one; without CUDA they raise
// RuntimeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "format/types.h"

#if defined(QRT_HAVE_CUDA)
#include "cuda/testing.h"
#endif

namespace py = pybind11;
using namespace pybind11::literals;

namespace qrt::bindings {

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

#if defined(QRT_HAVE_CUDA)
py::array_t<float> to_array(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
    py::array_t<float> out(shape);
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}
#else
[[noreturn]] void no_cuda() {
    throw std::runtime_error("this qrt build has no CUDA backend");
}
#endif

py::array_t<float> matvec(const U8& raw, const std::string& type, int64_t rows, const F32& x) {
    const TypeTraits* t = find_type(type);
    if (!t) throw py::value_error("unknown tensor type '" + type + "'");
    if (x.ndim() != 2) throw py::value_error("x must be [n_tok, cols]");
    const int64_t n_tok = x.shape(0), cols = x.shape(1);
    uint64_t nbytes = 0;
    if (cols % t->block_size != 0 || !tensor_nbytes(*t, cols, rows, &nbytes) ||
        uint64_t(raw.size()) != nbytes)
        throw py::value_error("raw holds " + std::to_string(raw.size()) + " bytes, not a [" +
                              std::to_string(rows) + ", " + std::to_string(cols) + "] " + type + " tensor");
#if defined(QRT_HAVE_CUDA)
    std::vector<float> y;
    {
        py::gil_scoped_release release;
        y = cuda::testing::matvec(t->id, raw.data(), nbytes, cols, rows, x.data(), int(n_tok));
    }
    return to_array(y, {n_tok, rows});
#else
    (void)n_tok;
    no_cuda();
#endif
}

py::array_t<float> rmsnorm(const F32& x, const F32& w, float eps) {
    if (x.ndim() != 2 || w.ndim() != 1 || w.shape(0) != x.shape(1))
        throw py::value_error("x [n_tok, n], w [n]");
#if defined(QRT_HAVE_CUDA)
    return to_array(cuda::testing::rmsnorm(x.data(), w.data(), x.shape(1), int(x.shape(0)), eps),
                    {x.shape(0), x.shape(1)});
#else
    (void)eps;
    no_cuda();
#endif
}

py::array_t<float> rope(const F32& x, const I32& pos, const F32& inv_freq, float freq_scale, bool neox) {
    if (x.ndim() != 3 || pos.ndim() != 1 || pos.shape(0) != x.shape(0) || x.shape(2) % 2 != 0 ||
        inv_freq.size() != x.shape(2) / 2)
        throw py::value_error("x [n_tok, n_head, head_dim], pos [n_tok], inv_freq [head_dim / 2]");
#if defined(QRT_HAVE_CUDA)
    return to_array(cuda::testing::rope(x.data(), int(x.shape(0)), int(x.shape(1)), int(x.shape(2)),
                                        pos.data(), inv_freq.data(), freq_scale, neox),
                    {x.shape(0), x.shape(1), x.shape(2)});
#else
    (void)freq_scale, (void)neox;
    no_cuda();
#endif
}

py::array_t<float> silu_mul(const F32& gate, const F32& up) {
    if (gate.ndim() != 1 || up.ndim() != 1 || gate.size() != up.size())
        throw py::value_error("gate, up: [n] each");
#if defined(QRT_HAVE_CUDA)
    return to_array(cuda::testing::silu_mul(gate.data(), up.data(), gate.size()), {gate.size()});
#else
    no_cuda();
#endif
}

}  // namespace

void register_cuda(py::module_& m) {
    m.def("cuda_test_matvec", &matvec, "raw"_a, "type"_a, "rows"_a, "x"_a,
          "Tests only: y [n_tok, rows] = W x[t] by the CUDA dequant-matvec, W the [rows, x.shape[1]] tensor "
          "of\n"
          "`type` in `raw`. RuntimeError without CUDA.");
    m.def("cuda_test_rmsnorm", &rmsnorm, "x"_a, "w"_a, "eps"_a,
          "Tests only: the CUDA RMSNorm of each row of x.");
    m.def("cuda_test_rope", &rope, "x"_a, "pos"_a, "inv_freq"_a, "freq_scale"_a, "neox"_a,
          "Tests only: the CUDA RoPE of x [n_tok, n_head, head_dim] at positions pos.");
    m.def("cuda_test_silu_mul", &silu_mul, "gate"_a, "up"_a,
          "Tests only: silu(gate) * up by the CUDA kernel.");
}

}  // namespace qrt::bindings
