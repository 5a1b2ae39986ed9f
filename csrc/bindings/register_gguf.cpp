// qrt._C.gguf_open / GGUFFile: the GGUF reader (csrc/gguf) exposed to python/qrt/gguf.py.
//
// The C++ File lives in a shared_ptr owned by its Python object. raw() hands out numpy views straight
// into the mapping whose base is that Python object, so the mapping outlives every view: closing the
// Python-level GGUFFile drops one reference, and the file is unmapped when the last view is gone.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/register.h"
#include "gguf/gguf.h"
#include "gguf/mmap.h"

namespace py = pybind11;

namespace qrt::bindings {

namespace {

using gguf::File;
using gguf::Value;
using gguf::ValueType;

template <typename T>
py::list numbers(const Value& v) {
    py::list out(size_t(v.count));
    for (uint64_t i = 0; i < v.count; ++i) {
        const T x = v.at<T>(i);
        if constexpr (std::is_same_v<T, bool>)
            out[size_t(i)] = py::bool_(x);
        else if constexpr (std::is_floating_point_v<T>)
            out[size_t(i)] = py::float_(double(x));
        else
            out[size_t(i)] = py::int_(x);
    }
    return out;
}

py::list elements(const Value& v) {
    switch (v.element_type) {
        case ValueType::UINT8:
            return numbers<uint8_t>(v);
        case ValueType::INT8:
            return numbers<int8_t>(v);
        case ValueType::UINT16:
            return numbers<uint16_t>(v);
        case ValueType::INT16:
            return numbers<int16_t>(v);
        case ValueType::UINT32:
            return numbers<uint32_t>(v);
        case ValueType::INT32:
            return numbers<int32_t>(v);
        case ValueType::FLOAT32:
            return numbers<float>(v);
        case ValueType::BOOL:
            return numbers<bool>(v);
        case ValueType::UINT64:
            return numbers<uint64_t>(v);
        case ValueType::INT64:
            return numbers<int64_t>(v);
        case ValueType::FLOAT64:
            return numbers<double>(v);
        case ValueType::STRING: {
            py::list out(v.strings.size());
            for (size_t i = 0; i < v.strings.size(); ++i)  // validated UTF-8 by the reader
                out[i] = py::str(v.strings[i].data(), v.strings[i].size());
            return out;
        }
        case ValueType::ARRAY:
            break;
    }
    throw std::logic_error("GGUF value of unknown type");  // the reader never produces one
}

// [(key, type, element_type or None, value)] in file order; scalars unwrapped, arrays as lists.
py::list metadata(const File& f) {
    py::list out;
    for (const auto& kv : f.metadata()) {
        const Value& v = kv.value;
        py::list items = elements(v);
        py::object value = v.is_array() ? py::object(items) : py::object(items[0]);
        py::object element =
            v.is_array() ? py::object(py::str(gguf::value_type_name(v.element_type))) : py::none();
        out.append(py::make_tuple(kv.key, gguf::value_type_name(v.type), element, value));
    }
    return out;
}

// [(name, ne (ggml order), type name, absolute offset, nbytes)] in file order.
py::list tensors(const File& f) {
    py::list out;
    for (const auto& t : f.tensors()) {
        py::tuple ne(t.n_dims);
        for (uint32_t j = 0; j < t.n_dims; ++j) ne[j] = py::int_(t.ne[j]);
        out.append(py::make_tuple(t.name, ne, t.type->name, t.offset, t.nbytes));
    }
    return out;
}

// Read-only uint8 view of a tensor's bytes; its base keeps `self` (and so the mapping) alive.
py::array raw(const std::shared_ptr<File>& self, const std::string& name) {
    const gguf::TensorInfo* t = self->find_tensor(name);
    if (!t) throw py::key_error("no tensor named '" + name + "' in " + self->path());
    py::array out(py::dtype::of<uint8_t>(), {py::ssize_t(t->nbytes)}, {py::ssize_t(1)},
                  const_cast<uint8_t*>(self->tensor_data(*t)), py::cast(self));
    out.attr("setflags")(py::arg("write") = false);
    return out;
}

std::shared_ptr<File> open(const std::string& path) {
    py::gil_scoped_release release;  // parsing a tokenizer's 100k strings takes milliseconds
    return std::make_shared<File>(path);
}

// IoError -> OSError(errno, reason, filename): OSError picks the subclass errno selects
// (FileNotFoundError, PermissionError, IsADirectoryError ...).
void translate_io_error(std::exception_ptr p) {
    try {
        if (p) std::rethrow_exception(p);
    } catch (const IoError& e) {
        py::object filename = py::reinterpret_steal<py::object>(PyUnicode_DecodeFSDefault(e.path.c_str()));
        if (!filename) return;  // the decode error is already set
        py::object exc =
            py::reinterpret_borrow<py::object>(PyExc_OSError)(e.error_number, e.reason, filename);
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    }
}

}  // namespace

void register_gguf(py::module_& m) {
    py::register_exception_translator(&translate_io_error);
    py::class_<File, std::shared_ptr<File>>(m, "GGUFFile",
                                            "A parsed, memory-mapped GGUF file (see qrt.gguf).")
        .def_property_readonly("path", &File::path)
        .def_property_readonly("file_size", &File::file_size)
        .def_property_readonly("version", &File::version)
        .def_property_readonly("alignment", &File::alignment)
        .def_property_readonly("data_offset", &File::data_offset)
        .def("metadata", &metadata, "[(key, type, element_type or None, value)] in file order.")
        .def("tensors", &tensors, "[(name, ne in ggml order, type, absolute offset, nbytes)] in file order.")
        .def("raw", &raw, py::arg("name"), "Read-only uint8 numpy view of a tensor's bytes (zero-copy).");
    m.def("gguf_open", &open, py::arg("path"),
          "Map and validate a GGUF file; FormatError/UnsupportedError/OSError on failure.");
}

}  // namespace qrt::bindings
