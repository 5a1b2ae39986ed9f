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

}  // namespace qrt
