// THE registry of tensor types: one row per type, looked up by id or name.
//
// Everything that depends on a tensor's type (block geometry, byte sizes, reference kernels, the
// activation format its dot products pair with, test tolerances) is a field of its row. Code outside
// csrc/format/ asks the registry instead of switching on the type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qrt {

// Ids are ggml's (`ggml/include/ggml.h` enum ggml_type) so they are what GGUF files store.
// NF4 has no ggml id; ours sits far above ggml's range so llama.cpp rejects such files outright.
enum class TypeId : int32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    BF16 = 30,
    NF4 = 1000,
};

// Dequantize rows [row_begin, row_end) of a tensor of `nrows` rows x `ne0` elements whose bytes start
// at `tensor`; writes (row_end - row_begin) * ne0 floats to `out`. The whole tensor is passed because a
// type may keep per-tensor state (NF4's double-quantized absmax) after its blocks.
using DequantizeRowsFn = void (*)(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin,
                                  int64_t row_end, float* out);

// Quantize a whole tensor of `nrows` x `ne0` floats into tensor_nbytes() bytes at `out`.
using QuantizeTensorFn = void (*)(const float* x, int64_t ne0, int64_t nrows, uint8_t* out, int n_threads);

// Plain per-row reference functions of block types (n is a multiple of block_size).
using DequantizeRowFn = void (*)(const void* blocks, float* y, int64_t n);
using QuantizeRowFn = void (*)(const float* x, void* blocks, int64_t n);
// One row of n values weighted by quant_weights (n values, one per column): weighted.h.
using QuantizeRowWeightedFn = void (*)(const float* x, void* blocks, int64_t n, const float* quant_weights);

// Dot product of n elements (a multiple of block_size) of weight blocks x with activations y in the type's
// vec_dot_type: ggml-cpu's ggml_vec_dot_<type>_<partner>, scalar. The scalar reference every fast kernel is
// tested against. nullptr for compute-only types and for types whose rows are not self-contained (NF4).
using VecDotFn = float (*)(int64_t n, const void* x, const void* y);

// out[r - row_begin] = (row r of a tensor of `nrows` x `ne0` whose bytes start at `tensor`) . y, for r in
// [row_begin, row_end); y is one row of ne0 activations in vec_dot_type. The reference matrix-vector product;
// like DequantizeRowsFn it takes the whole tensor so per-tensor state (NF4) is reachable.
using VecDotRowsFn = void (*)(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin,
                              int64_t row_end, const void* y, float* out);

struct TypeTraits {
    TypeId id;
    const char* name;     // GGUF/ggml spelling: "Q4_K", "F16", "NF4"
    int64_t block_size;   // elements per block
    size_t type_size;     // bytes per block
    TypeId vec_dot_type;  // activation format matmul kernels quantize the input to
    bool in_files;        // false for compute-only types (Q8_1, Q8_K): refused when read from a file
    DequantizeRowFn dequantize_row;  // nullptr when rows are not self-contained (NF4)
    QuantizeRowFn quantize_row_ref;  // nullptr when rows are not self-contained (NF4)
    DequantizeRowsFn dequantize_rows;
    QuantizeTensorFn quantize_tensor;
    // ggml's quantize_row_<type>_impl with quant_weights; nullptr where ggml ignores the weights.
    QuantizeRowWeightedFn quantize_row_weighted;
    VecDotFn vec_dot;           // nullptr when rows are not self-contained (NF4) or for compute-only types
    VecDotRowsFn vec_dot_rows;  // nullptr only for compute-only types (Q8_1, Q8_K)
    // Bytes a tensor of n elements keeps after its blocks (0 for every ggml type).
    size_t (*tail_bytes)(int64_t n_elements);
    // Round trip relative RMS error bound on N(0,1) data, used by the tests that loop over the registry.
    double max_rel_rmse;
};

// Every registered type, in id order.
const std::vector<TypeTraits>& all_types();

// nullptr when the id / name is unknown.
const TypeTraits* find_type(int32_t ggml_id);
const TypeTraits* find_type(const std::string& name);
const TypeTraits& traits(TypeId id);

// Byte size of a tensor; false (and *out untouched) when ne0 is not a multiple of the block size or the
// size does not fit in 63 bits.
bool tensor_nbytes(const TypeTraits& t, int64_t ne0, int64_t nrows, uint64_t* out);

}  // namespace qrt
