// Importance-weighted quantizers: ggml-quants.c quantize_row_<type>_impl with quant_weights, the path
// llama-quantize takes when it has an importance matrix for the tensor.
//
// quant_weights holds one non-negative weight per column of the row (llama-imatrix's mean of x² over the
// calibration activations entering that column); the same weights serve every row of a tensor. Each
// function quantizes one row of n_per_row values (a multiple of the type's block size) and is byte-identical
// to ggml_quantize_chunk(type, ..., quant_weights) on that row. Types ggml quantizes without looking at the
// weights (F32, F16, BF16, Q8_0) have none: their registry row leaves quantize_row_weighted empty.
#pragma once

#include <cstdint>

#include "format/types.h"

namespace qrt {

void quantize_row_q4_0_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q4_1_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q5_0_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q5_1_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q2_K_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q3_K_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q4_K_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q5_K_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);
void quantize_row_q6_K_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights);

// A whole tensor of nrows x ne0 as ggml_quantize_chunk quantizes it: with the type's weighted quantizer when
// quant_weights (ne0 values) is given and the type has one, else with its reference quantizer.
void quantize_tensor_weighted(const TypeTraits& t, const float* x, int64_t ne0, int64_t nrows,
                              const float* quant_weights, uint8_t* out, int n_threads);

}  // namespace qrt
