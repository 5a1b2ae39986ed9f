// qrt._C.quantize / dequantize / types: the tensor formats of the registry, exposed to numpy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "cpu/parallel.h"
#include "format/grid.h"
#include "format/types.h"
#include "format/weighted.h"
#include "kernels/dispatch.h"

namespace py = pybind11;

namespace qrt::bindings {

namespace {

const TypeTraits& type_by_name(const std::string& name) {
    const TypeTraits* t = find_type(name);
    if (!t) {
        std::string known;
        for (const auto& r : all_types()) known += std::string(known.empty() ? "" : ", ") + r.name;
        throw py::value_error("unknown tensor type '" + name + "'; known types: " + known);
    }
    return *t;
}

py::list types() {
    py::list out;
    for (const auto& t : all_types()) {
        py::dict row;
        row["name"] = t.name;
        row["id"] = int32_t(t.id);
        row["block_size"] = t.block_size;
        row["type_size"] = t.type_size;
        row["vec_dot_type"] = traits(t.vec_dot_type).name;
        row["in_files"] = t.in_files;
        row["row_wise"] = t.dequantize_row != nullptr;
        row["max_rel_rmse"] = t.max_rel_rmse;
        out.append(row);
    }
    return out;
}

py::array quantize(py::array_t<float, py::array::c_style | py::array::forcecast> a, const std::string& type,
                   int n_threads,
                   std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> imatrix) {
    const TypeTraits& t = type_by_name(type);
    if (a.ndim() < 1) throw py::value_error("quantize: expected an array with at least one dimension");
    const int64_t ne0 = a.shape(a.ndim() - 1);
    if (ne0 == 0 || a.size() == 0) throw py::value_error("quantize: the array is empty");
    if (ne0 % t.block_size != 0)
        throw py::value_error("quantize: rows of " + std::to_string(ne0) + " values are not a multiple of " +
                              t.name + "'s block size " + std::to_string(t.block_size));
    const int64_t nrows = a.size() / ne0;
    uint64_t nbytes = 0;
    if (!tensor_nbytes(t, ne0, nrows, &nbytes)) throw py::value_error("quantize: array too large");
    const float* x = a.data();
    for (int64_t i = 0; i < a.size(); ++i)
        if (!std::isfinite(x[i]))
            throw py::value_error("quantize: value at flat index " + std::to_string(i) + " is not finite");
    const float* qw = nullptr;
    if (imatrix) {
        if (imatrix->ndim() != 1 || imatrix->shape(0) != ne0)
            throw py::value_error("quantize: imatrix must hold one weight per column (" +
                                  std::to_string(ne0) + " values)");
        qw = imatrix->data();
        for (int64_t i = 0; i < ne0; ++i)
            if (!std::isfinite(qw[i]) || qw[i] < 0)
                throw py::value_error("quantize: imatrix value at index " + std::to_string(i) +
                                      " is negative or not finite");
    }

    // Block types keep gguf-py's shape (..., row_bytes); types with per-tensor state are one flat run.
    std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
    if (t.tail_bytes(ne0 * nrows) == 0)
        shape.back() = py::ssize_t(nbytes / uint64_t(nrows));
    else
        shape = {py::ssize_t(nbytes)};
    py::array_t<uint8_t> out(shape);
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        quantize_tensor_weighted(t, x, ne0, nrows, qw, dst, n_threads);
    }
    return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

py::array dequantize(py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw,
                     const std::string& type, const std::vector<int64_t>& shape, int n_threads,
                     std::optional<py::array> out_arg) {
    const TypeTraits& t = type_by_name(type);
    if (shape.empty()) throw py::value_error("dequantize: shape must have at least one dimension");
    int64_t nrows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) {
        if (shape[i] <= 0) throw py::value_error("dequantize: dimensions must be positive");
        if (nrows > INT64_MAX / shape[i]) throw py::value_error("dequantize: shape too large");
        nrows *= shape[i];
    }
    const int64_t ne0 = shape.back();
    uint64_t nbytes = 0;
    if (ne0 <= 0 || ne0 % t.block_size != 0)
        throw py::value_error("dequantize: last dimension " + std::to_string(ne0) +
                              " is not a positive multiple of " + t.name + "'s block size " +
                              std::to_string(t.block_size));
    if (!tensor_nbytes(t, ne0, nrows, &nbytes)) throw py::value_error("dequantize: shape too large");
    if (uint64_t(raw.nbytes()) != nbytes)
        throw py::value_error("dequantize: " + std::string(t.name) + " data of this shape takes " +
                              std::to_string(nbytes) + " bytes, got " + std::to_string(raw.nbytes()));
    py::array_t<float> out;
    if (out_arg) {
        // Writing into the caller's array saves allocating (and first-touching) the output every call.
        const py::array& o = *out_arg;
        const bool ok = py::isinstance<py::array_t<float>>(o) && (o.flags() & py::array::c_style) &&
                        o.writeable() && o.ndim() == py::ssize_t(shape.size()) &&
                        std::equal(shape.begin(), shape.end(), o.shape(),
                                   [](int64_t a, py::ssize_t b) { return a == b; });
        if (!ok)
            throw py::value_error("dequantize: out must be a writeable C-contiguous float32 array of shape " +
                                  shape_text(shape));
        out = py::reinterpret_borrow<py::array_t<float>>(o);
    } else {
        out = py::array_t<float>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    }
    const uint8_t* src = raw.data();
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        const int64_t rows_per_chunk = std::max<int64_t>(1, (1 << 16) / ne0);
        // Row-wise types use this machine's fastest kernel; the others (NF4) their tensor-level function.
        const DequantizeRowFn row = t.dequantize_row ? kernels::dequantize_row(t.id) : nullptr;
        const size_t row_bytes = size_t(ne0 / t.block_size) * t.type_size;
        parallel_for(nrows, n_threads, rows_per_chunk, [&](int64_t r0, int64_t r1) {
            if (!row) return t.dequantize_rows(src, ne0, nrows, r0, r1, dst + r0 * ne0);
            for (int64_t r = r0; r < r1; ++r) row(src + size_t(r) * row_bytes, dst + r * ne0, ne0);
        });
    }
    return out;
}

// The scalar reference dot products (the registry's vec_dot_rows), for tests: each weight row times x, with x
// first quantized to the type's vec_dot_type by that type's reference quantizer, as a matmul would.
py::array vec_dot(py::array_t<uint8_t, py::array::c_style | py::array::forcecast> weights,
                  py::array_t<float, py::array::c_style | py::array::forcecast> x, const std::string& type) {
    const TypeTraits& t = type_by_name(type);
    const TypeTraits& p = traits(t.vec_dot_type);
    if (!t.vec_dot_rows || !p.quantize_row_ref)
        throw py::value_error(std::string("vec_dot: ") + t.name +
                              " has no dot product (a compute-only type)");
    if (x.ndim() != 1) throw py::value_error("vec_dot: x must be one row (a 1-D array)");
    const int64_t ne0 = x.shape(0);
    if (ne0 == 0 || ne0 % t.block_size != 0 || ne0 % p.block_size != 0)
        throw py::value_error("vec_dot: a row of " + std::to_string(ne0) +
                              " values is not a positive multiple of " + t.name + "'s block size " +
                              std::to_string(t.block_size) + " and " + p.name + "'s " +
                              std::to_string(p.block_size));
    const float* xd = x.data();
    for (int64_t i = 0; i < ne0; ++i)
        if (!std::isfinite(xd[i]))
            throw py::value_error("vec_dot: x[" + std::to_string(i) + "] is not finite");
    // The weights hold nrows rows of ne0: find the row count whose tensor size is their byte count (sizes
    // grow with nrows, so bisect; block types simply give nbytes / row_bytes).
    const uint64_t nbytes = uint64_t(weights.nbytes());
    const uint64_t row_bytes = uint64_t(ne0 / t.block_size) * t.type_size;
    int64_t lo = 1, hi = int64_t(nbytes / row_bytes);
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        uint64_t size = 0;
        if (tensor_nbytes(t, ne0, mid, &size) && size >= nbytes)
            hi = mid;
        else
            lo = mid + 1;
    }
    uint64_t size = 0;
    if (hi < 1 || !tensor_nbytes(t, ne0, lo, &size) || size != nbytes)
        throw py::value_error("vec_dot: " + std::to_string(nbytes) + " bytes are not a whole number of " +
                              t.name + " rows of " + std::to_string(ne0) + " values");
    const int64_t nrows = lo;
    uint64_t act_bytes = 0;
    tensor_nbytes(p, ne0, 1, &act_bytes);
    std::vector<uint8_t> act(act_bytes);
    py::array_t<float> out(nrows);
    const uint8_t* w = weights.data();
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        p.quantize_row_ref(xd, act.data(), ne0);
        t.vec_dot_rows(w, ne0, nrows, 0, nrows, act.data(), dst);
    }
    return out;
}

// The rows of `raw` (nrows x row_bytes of `t` blocks) for a fixed-grid call; throws for a type without a
// grid.
int64_t grid_rows(const TypeTraits& t, const py::array& raw, int64_t ne0, const char* fn) {
    int qmin = 0, qmax = 0;
    if (!grid_range(t, &qmin, &qmax))
        throw py::value_error(std::string(fn) + ": " + t.name + " has no fixed grid per block");
    if (ne0 <= 0 || ne0 % t.block_size != 0)
        throw py::value_error(std::string(fn) + ": rows of " + std::to_string(ne0) +
                              " values are not a positive multiple of " + t.name + "'s block size " +
                              std::to_string(t.block_size));
    const int64_t row_bytes = ne0 / t.block_size * int64_t(t.type_size);
    if (raw.ndim() != 2 || raw.shape(1) != row_bytes)
        throw py::value_error(std::string(fn) + ": expected raw bytes of shape (nrows, " +
                              std::to_string(row_bytes) + ")");
    return raw.shape(0);
}

py::tuple block_grid(py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw,
                     const std::string& type, int64_t ne0) {
    const TypeTraits& t = type_by_name(type);
    const int64_t nrows = grid_rows(t, raw, ne0, "block_grid");
    py::array_t<float> scale({py::ssize_t(nrows), py::ssize_t(ne0)}),
        offset({py::ssize_t(nrows), py::ssize_t(ne0)});
    const uint8_t* src = raw.data();
    float* a = scale.mutable_data();
    float* o = offset.mutable_data();
    {
        py::gil_scoped_release release;
        for (int64_t r = 0; r < nrows; ++r)
            row_grid(t, src + r * raw.shape(1), ne0, a + r * ne0, o + r * ne0);
    }
    int qmin = 0, qmax = 0;
    grid_range(t, &qmin, &qmax);
    return py::make_tuple(scale, offset, qmin, qmax);
}

py::array set_quants(py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw,
                     const std::string& type,
                     py::array_t<int8_t, py::array::c_style | py::array::forcecast> q) {
    const TypeTraits& t = type_by_name(type);
    if (q.ndim() != 2) throw py::value_error("set_quants: q must be 2-D (nrows, ne0)");
    const int64_t ne0 = q.shape(1);
    const int64_t nrows = grid_rows(t, raw, ne0, "set_quants");
    if (q.shape(0) != nrows) throw py::value_error("set_quants: q and raw have different row counts");
    int qmin = 0, qmax = 0;
    grid_range(t, &qmin, &qmax);
    const int8_t* qd = q.data();
    for (int64_t i = 0; i < q.size(); ++i)
        if (qd[i] < qmin || qd[i] > qmax)
            throw py::value_error("set_quants: q at flat index " + std::to_string(i) + " is outside [" +
                                  std::to_string(qmin) + ", " + std::to_string(qmax) + "]");
    py::array_t<uint8_t> out({raw.shape(0), raw.shape(1)});
    std::memcpy(out.mutable_data(), raw.data(), size_t(raw.nbytes()));
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (int64_t r = 0; r < nrows; ++r) set_row_quants(t, dst + r * raw.shape(1), ne0, qd + r * ne0);
    }
    return out;
}

}  // namespace

void register_format(py::module_& m) {
    m.def("types", &types, "The type registry: one dict per tensor type.");
    m.def("quantize", &quantize, py::arg("a"), py::arg("type"), py::arg("n_threads") = 0,
          py::arg("imatrix") = py::none(),
          "Quantize float32 rows (last axis) with the type's reference quantizer, or with its weighted "
          "quantizer (ggml's quantize_row_*_impl) when imatrix holds one weight per column.");
    m.def("dequantize", &dequantize, py::arg("raw"), py::arg("type"), py::arg("shape"),
          py::arg("n_threads") = 0, py::arg("out") = py::none(),
          "Dequantize raw tensor bytes of the given numpy shape to float32 (into out when given).");
    m.def("vec_dot", &vec_dot, py::arg("weights"), py::arg("x"), py::arg("type"),
          "Reference dot products of each row of a tensor's bytes (rows of len(x), the row count inferred "
          "from the "
          "byte count) with the float32 row x, which is first quantized to the type's vec_dot_type by its "
          "reference quantizer. Returns float32 of shape (nrows,).");
    m.def("block_grid", &block_grid, py::arg("raw"), py::arg("type"), py::arg("ne0"),
          "The fixed grid of quantized rows (nrows, row_bytes): (scale, offset, qmin, qmax), element i of a "
          "row can be scale[i] * q + offset[i] for an integer q in [qmin, qmax].");
    m.def("set_quants", &set_quants, py::arg("raw"), py::arg("type"), py::arg("q"),
          "A copy of the quantized rows raw with every element's q (int8, (nrows, ne0)) replaced, scales "
          "kept.");
}

}  // namespace qrt::bindings
