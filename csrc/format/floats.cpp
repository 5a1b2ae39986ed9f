#include "format/floats.h"

namespace qrt {

void dequantize_row_f32(const void* x, float* y, int64_t n) {
    memcpy(y, x, size_t(n) * sizeof(float));
}

void dequantize_row_f16(const void* x, float* y, int64_t n) {
    const half_bits* h = static_cast<const half_bits*>(x);
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
}

void dequantize_row_bf16(const void* x, float* y, int64_t n) {
    const bf16_bits* b = static_cast<const bf16_bits*>(x);
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(b[i]);
}

void quantize_row_f32_ref(const float* x, void* y, int64_t n) {
    memcpy(y, x, size_t(n) * sizeof(float));
}

void quantize_row_f16_ref(const float* x, void* y, int64_t n) {
    half_bits* h = static_cast<half_bits*>(y);
    for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(x[i]);
}

void quantize_row_bf16_ref(const float* x, void* y, int64_t n) {
    bf16_bits* b = static_cast<bf16_bits*>(y);
    for (int64_t i = 0; i < n; ++i) b[i] = fp32_to_bf16(x[i]);
}

float vec_dot_f32_f32(int64_t n, const void* vx, const void* vy) {
    const float* x = static_cast<const float*>(vx);
    const float* y = static_cast<const float*>(vy);
    double sumf = 0.0;
    for (int64_t i = 0; i < n; ++i) sumf += double(x[i] * y[i]);
    return float(sumf);
}

float vec_dot_f16_f16(int64_t n, const void* vx, const void* vy) {
    const half_bits* x = static_cast<const half_bits*>(vx);
    const half_bits* y = static_cast<const half_bits*>(vy);
    double sumf = 0.0;
    for (int64_t i = 0; i < n; ++i) sumf += double(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
    return float(sumf);
}

float vec_dot_bf16_bf16(int64_t n, const void* vx, const void* vy) {
    const bf16_bits* x = static_cast<const bf16_bits*>(vx);
    const bf16_bits* y = static_cast<const bf16_bits*>(vy);
    double sumf = 0.0;
    for (int64_t i = 0; i < n; ++i) sumf += double(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return float(sumf);
}

}  // namespace qrt
