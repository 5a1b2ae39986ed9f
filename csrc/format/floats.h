// The unquantized element types F32, F16 and BF16 as "blocks" of one element, so the registry, the GGUF
// reader and the kernels treat them like any other type.
#pragma once

#include "format/common.h"

namespace qrt {

void dequantize_row_f32(const void* x, float* y, int64_t n);
void dequantize_row_f16(const void* x, float* y, int64_t n);
void dequantize_row_bf16(const void* x, float* y, int64_t n);

void quantize_row_f32_ref(const float* x, void* y, int64_t n);
void quantize_row_f16_ref(const float* x, void* y, int64_t n);   // round to nearest even
void quantize_row_bf16_ref(const float* x, void* y, int64_t n);  // ggml_compute_fp32_to_bf16

// Dot products of two rows of the same type, as ggml-cpu vec.cpp ggml_vec_dot_f32/_f16/_bf16 without SIMD:
// each product rounded to float (exact for F16 and BF16, whose products fit float's 24-bit significand),
// accumulated in double, the sum rounded to float. (ggml's SIMD paths accumulate in float lanes instead.)
float vec_dot_f32_f32(int64_t n, const void* x, const void* y);
float vec_dot_f16_f16(int64_t n, const void* x, const void* y);
float vec_dot_bf16_bf16(int64_t n, const void* x, const void* y);

}  // namespace qrt
