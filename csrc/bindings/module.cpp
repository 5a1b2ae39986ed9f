// qrt._C: the extension module. Python-facing names live in python/qrt; this file wires errors and
// build information and calls each register_X.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/register.h"
#include "cpu/isa.h"
#include "errors.h"
#include "format/types.h"

#if defined(QRT_HAVE_CUDA)
#include "cuda/device.h"
#endif

namespace py = pybind11;

namespace {

py::dict build_info() {
    const qrt::CpuFeatures& f = qrt::cpu_features();
    py::dict cpu;
    cpu["avx2"] = f.avx2;
    cpu["fma"] = f.fma;
    cpu["f16c"] = f.f16c;
    cpu["avx512f"] = f.avx512f;
    cpu["neon"] = f.neon;
    cpu["dotprod"] = f.dotprod;
    cpu["avxvnni"] = f.avxvnni;

    py::list compiled;
    compiled.append("scalar");
#if defined(QRT_HAVE_AVX2)
    compiled.append("avx2");
#endif
#if defined(QRT_HAVE_NEON)
    compiled.append("neon");
#endif
    py::dict info;
    info["version"] = QRT_VERSION;
    info["compiler"] = QRT_COMPILER;
    py::list gpus;
#if defined(QRT_HAVE_CUDA)
    info["cuda"] = true;
    info["cuda_runtime"] = qrt::cuda::runtime_version();
    for (const auto& d : qrt::cuda::devices()) {
        py::dict g;
        g["index"] = d.index;
        g["name"] = d.name;
        g["compute_capability"] = d.compute_capability;
        g["total_bytes"] = d.total_bytes;
        g["free_bytes"] = d.free_bytes;
        gpus.append(g);
    }
#else
    info["cuda"] = false;
    info["cuda_runtime"] = py::none();
#endif
    info["cuda_devices"] = gpus;
    info["cpu_features"] = cpu;
    info["isas_compiled"] = compiled;
    info["isa"] = qrt::isa_name(qrt::active_isa());
    return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "qrt native engine";
    auto format_error = py::register_exception<qrt::FormatError>(m, "FormatError", PyExc_ValueError);
    auto unsupported = py::register_exception<qrt::UnsupportedError>(m, "UnsupportedError", PyExc_ValueError);
    format_error.doc() = "A file's bytes are corrupt or inconsistent (the message says where).";
    unsupported.doc() = "Valid content that qrt does not support.";
    m.def("build_info", &build_info, "Version, compiler, CUDA, CPU features detected and the ISA in use.");
    qrt::bindings::register_format(m);
    qrt::bindings::register_gguf(m);
    qrt::bindings::register_sample(m);
    qrt::bindings::register_model(m);
    qrt::bindings::register_scheduler(m);
    qrt::bindings::register_cuda(m);
    qrt::bindings::register_imatrix(m);
}
