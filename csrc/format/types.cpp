// The type registry: one designated-initializer row per type. Adding a type = its format file + one row.
#include "format/types.h"

#include <limits>

#include "cpu/parallel.h"
#include "format/floats.h"
#include "format/kquants.h"
#include "format/legacy.h"
#include "format/nf4.h"
#include "format/weighted.h"

namespace qrt {

namespace {

// Whole-tensor adaptors for types whose rows are self-contained runs of blocks.
template <DequantizeRowFn Row, int64_t Block, size_t Size>
void dequantize_rows_of_blocks(const uint8_t* tensor, int64_t ne0, int64_t /*nrows*/, int64_t row_begin,
                               int64_t row_end, float* out) {
    const size_t row_bytes = size_t(ne0 / Block) * Size;
    for (int64_t r = row_begin; r < row_end; ++r)
        Row(tensor + size_t(r) * row_bytes, out + (r - row_begin) * ne0, ne0);
}

template <QuantizeRowFn Row, int64_t Block, size_t Size>
void quantize_tensor_of_blocks(const float* x, int64_t ne0, int64_t nrows, uint8_t* out, int n_threads) {
    const size_t row_bytes = size_t(ne0 / Block) * Size;
    const int64_t rows_per_chunk = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, ne0));
    parallel_for(nrows, n_threads, rows_per_chunk, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) Row(x + r * ne0, out + size_t(r) * row_bytes, ne0);
    });
}

template <VecDotFn Dot, int64_t Block, size_t Size>
void vec_dot_rows_of_blocks(const uint8_t* tensor, int64_t ne0, int64_t /*nrows*/, int64_t row_begin,
                            int64_t row_end, const void* y, float* out) {
    const size_t row_bytes = size_t(ne0 / Block) * Size;
    for (int64_t r = row_begin; r < row_end; ++r)
        out[r - row_begin] = Dot(ne0, tensor + size_t(r) * row_bytes, y);
}

size_t no_tail(int64_t) {
    return 0;
}

// Compute-only activation types (Q8_1, Q8_K) have no dot of their own: ggml has no Q8_1 x Q8_1 or Q8_K x
// Q8_K.
template <typename Block, int64_t QK, DequantizeRowFn Dequantize, QuantizeRowFn Quantize>
constexpr TypeTraits activation_type(TypeId id, const char* name, double max_rel_rmse) {
    return TypeTraits{
        .id = id,
        .name = name,
        .block_size = QK,
        .type_size = sizeof(Block),
        .vec_dot_type = id,
        .in_files = false,
        .dequantize_row = Dequantize,
        .quantize_row_ref = Quantize,
        .dequantize_rows = dequantize_rows_of_blocks<Dequantize, QK, sizeof(Block)>,
        .quantize_tensor = quantize_tensor_of_blocks<Quantize, QK, sizeof(Block)>,
        .quantize_row_weighted = nullptr,
        .vec_dot = nullptr,
        .vec_dot_rows = nullptr,
        .tail_bytes = no_tail,
        .max_rel_rmse = max_rel_rmse,
    };
}

template <typename Block, int64_t QK, DequantizeRowFn Dequantize, QuantizeRowFn Quantize, VecDotFn Dot>
constexpr TypeTraits block_type(TypeId id, const char* name, TypeId vec_dot_type, bool in_files,
                                double max_rel_rmse) {
    TypeTraits t = activation_type<Block, QK, Dequantize, Quantize>(id, name, max_rel_rmse);
    t.vec_dot_type = vec_dot_type;
    t.in_files = in_files;
    t.vec_dot = Dot;
    t.vec_dot_rows = vec_dot_rows_of_blocks<Dot, QK, sizeof(Block)>;
    return t;
}

constexpr TypeTraits weighted(TypeTraits t, QuantizeRowWeightedFn f) {
    t.quantize_row_weighted = f;
    return t;
}

// Tolerances: measured relative RMS error on N(0,1) rows of 4096, plus ~30% headroom.
const std::vector<TypeTraits> kTypes = {
    block_type<float, 1, dequantize_row_f32, quantize_row_f32_ref, vec_dot_f32_f32>(TypeId::F32, "F32",
                                                                                    TypeId::F32, true, 0.0),
    block_type<half_bits, 1, dequantize_row_f16, quantize_row_f16_ref, vec_dot_f16_f16>(
        TypeId::F16, "F16", TypeId::F16, true, 4e-4),
    weighted(block_type<block_q4_0, QK4_0, dequantize_row_q4_0, quantize_row_q4_0_ref, vec_dot_q4_0_q8_0>(
                 TypeId::Q4_0, "Q4_0", TypeId::Q8_0, true, 0.14),
             quantize_row_q4_0_weighted),
    weighted(block_type<block_q4_1, QK4_1, dequantize_row_q4_1, quantize_row_q4_1_ref, vec_dot_q4_1_q8_1>(
                 TypeId::Q4_1, "Q4_1", TypeId::Q8_1, true, 0.12),
             quantize_row_q4_1_weighted),
    weighted(block_type<block_q5_0, QK5_0, dequantize_row_q5_0, quantize_row_q5_0_ref, vec_dot_q5_0_q8_0>(
                 TypeId::Q5_0, "Q5_0", TypeId::Q8_0, true, 0.07),
             quantize_row_q5_0_weighted),
    weighted(block_type<block_q5_1, QK5_1, dequantize_row_q5_1, quantize_row_q5_1_ref, vec_dot_q5_1_q8_1>(
                 TypeId::Q5_1, "Q5_1", TypeId::Q8_1, true, 0.06),
             quantize_row_q5_1_weighted),
    block_type<block_q8_0, QK8_0, dequantize_row_q8_0, quantize_row_q8_0_ref, vec_dot_q8_0_q8_0>(
        TypeId::Q8_0, "Q8_0", TypeId::Q8_0, true, 0.01),
    activation_type<block_q8_1, QK8_1, dequantize_row_q8_1, quantize_row_q8_1_ref>(TypeId::Q8_1, "Q8_1",
                                                                                   0.01),
    weighted(block_type<block_q2_K, QK_K, dequantize_row_q2_K, quantize_row_q2_K_ref, vec_dot_q2_K_q8_K>(
                 TypeId::Q2_K, "Q2_K", TypeId::Q8_K, true, 0.39),
             quantize_row_q2_K_weighted),
    weighted(block_type<block_q3_K, QK_K, dequantize_row_q3_K, quantize_row_q3_K_ref, vec_dot_q3_K_q8_K>(
                 TypeId::Q3_K, "Q3_K", TypeId::Q8_K, true, 0.20),
             quantize_row_q3_K_weighted),
    weighted(block_type<block_q4_K, QK_K, dequantize_row_q4_K, quantize_row_q4_K_ref, vec_dot_q4_K_q8_K>(
                 TypeId::Q4_K, "Q4_K", TypeId::Q8_K, true, 0.093),
             quantize_row_q4_K_weighted),
    weighted(block_type<block_q5_K, QK_K, dequantize_row_q5_K, quantize_row_q5_K_ref, vec_dot_q5_K_q8_K>(
                 TypeId::Q5_K, "Q5_K", TypeId::Q8_K, true, 0.047),
             quantize_row_q5_K_weighted),
    weighted(block_type<block_q6_K, QK_K, dequantize_row_q6_K, quantize_row_q6_K_ref, vec_dot_q6_K_q8_K>(
                 TypeId::Q6_K, "Q6_K", TypeId::Q8_K, true, 0.023),
             quantize_row_q6_K_weighted),
    activation_type<block_q8_K, QK_K, dequantize_row_q8_K, quantize_row_q8_K_ref>(TypeId::Q8_K, "Q8_K",
                                                                                  0.009),
    block_type<bf16_bits, 1, dequantize_row_bf16, quantize_row_bf16_ref, vec_dot_bf16_bf16>(
        TypeId::BF16, "BF16", TypeId::BF16, true, 3e-3),
    // NF4 keeps per-tensor state after its blocks (nf4.h), so it has tensor-level functions only.
    TypeTraits{.id = TypeId::NF4,
               .name = "NF4",
               .block_size = QK_NF4,
               .type_size = sizeof(block_nf4),
               .vec_dot_type = TypeId::Q8_0,
               .in_files = true,
               .dequantize_row = nullptr,
               .quantize_row_ref = nullptr,
               .dequantize_rows = dequantize_rows_nf4,
               .quantize_tensor = quantize_tensor_nf4,
               .quantize_row_weighted = nullptr,
               .vec_dot = nullptr,  // needs the tensor's state: vec_dot_nf4_q8_0 (nf4.h)
               .vec_dot_rows = vec_dot_rows_nf4,
               .tail_bytes = nf4_tail_bytes_of,
               .max_rel_rmse = 0.12},
};

}  // namespace

const std::vector<TypeTraits>& all_types() {
    return kTypes;
}

const TypeTraits* find_type(int32_t ggml_id) {
    for (const auto& t : kTypes)
        if (int32_t(t.id) == ggml_id) return &t;
    return nullptr;
}

const TypeTraits* find_type(const std::string& name) {
    for (const auto& t : kTypes)
        if (name == t.name) return &t;
    return nullptr;
}

const TypeTraits& traits(TypeId id) {
    return *find_type(int32_t(id));
}

bool tensor_nbytes(const TypeTraits& t, int64_t ne0, int64_t nrows, uint64_t* out) {
    constexpr uint64_t kMax = uint64_t(std::numeric_limits<int64_t>::max());
    if (ne0 <= 0 || nrows <= 0 || ne0 % t.block_size != 0) return false;
    const uint64_t blocks_per_row = uint64_t(ne0 / t.block_size);
    if (blocks_per_row > kMax / t.type_size) return false;
    const uint64_t row_bytes = blocks_per_row * t.type_size;
    if (uint64_t(nrows) > kMax / row_bytes) return false;
    if (uint64_t(ne0) > kMax / uint64_t(nrows)) return false;  // element count must fit too
    const uint64_t tail = t.tail_bytes(ne0 * nrows);
    if (row_bytes * uint64_t(nrows) > kMax - tail) return false;
    *out = row_bytes * uint64_t(nrows) + tail;
    return true;
}

}  // namespace qrt
