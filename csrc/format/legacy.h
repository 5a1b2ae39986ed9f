// The 32-element "legacy" ggml blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the compute-only Q8_1.
//
// Layouts are ggml-common.h's, byte for byte. In every 4/5-bit block the low nibbles of qs[0..15] hold
// elements 0..15 and the high nibbles hold elements 16..31; Q5's fifth bits live in the 32-bit little-endian
// word qh, bit j for element j. Q8_1 caches s = d * sum(qs) so dot products with Q4_1/Q5_1 get the min term
// for free. Reference functions: ggml-quants.c quantize_row_*_ref / dequantize_row_* (FORMATS.md §2.2-2.3).
#pragma once

#include "format/common.h"

namespace qrt {

struct block_q4_0 {
    half_bits d;
    uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 18, "wrong q4_0 block size");

struct block_q4_1 {
    half_bits d;
    half_bits m;
    uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20, "wrong q4_1 block size");

struct block_q5_0 {
    half_bits d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22, "wrong q5_0 block size");

struct block_q5_1 {
    half_bits d;
    half_bits m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24, "wrong q5_1 block size");

struct block_q8_0 {
    half_bits d;
    int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34, "wrong q8_0 block size");

struct block_q8_1 {
    half_bits d;
    half_bits s;  // d * sum(qs)
    int8_t qs[QK8_1];
};
static_assert(sizeof(block_q8_1) == 36, "wrong q8_1 block size");

QRT_HD uint32_t load_qh(const uint8_t qh[4]) {
    return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}

QRT_HD void dequantize_block_q4_0(const block_q4_0& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
        y[j] = ((b.qs[j] & 0x0F) - 8) * d;
        y[j + 16] = ((b.qs[j] >> 4) - 8) * d;
    }
}

QRT_HD void dequantize_block_q4_1(const block_q4_1& b, float* y) {
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    for (int j = 0; j < 16; ++j) {
        y[j] = (b.qs[j] & 0x0F) * d + m;
        y[j + 16] = (b.qs[j] >> 4) * d + m;
    }
}

QRT_HD void dequantize_block_q5_0(const block_q5_0& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const uint32_t qh = load_qh(b.qh);
    for (int j = 0; j < 16; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((b.qs[j] & 0x0F) | h0) - 16) * d;
        y[j + 16] = (((b.qs[j] >> 4) | h1) - 16) * d;
    }
}

QRT_HD void dequantize_block_q5_1(const block_q5_1& b, float* y) {
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    const uint32_t qh = load_qh(b.qh);
    for (int j = 0; j < 16; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((b.qs[j] & 0x0F) | h0) * d + m;
        y[j + 16] = ((b.qs[j] >> 4) | h1) * d + m;
    }
}

QRT_HD void dequantize_block_q8_0(const block_q8_0& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < QK8_0; ++j) y[j] = b.qs[j] * d;
}

QRT_HD void dequantize_block_q8_1(const block_q8_1& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < QK8_1; ++j) y[j] = b.qs[j] * d;
}

// Row functions over n elements (n a multiple of 32). Host only; the registry points at these.
void dequantize_row_q4_0(const void* x, float* y, int64_t n);
void dequantize_row_q4_1(const void* x, float* y, int64_t n);
void dequantize_row_q5_0(const void* x, float* y, int64_t n);
void dequantize_row_q5_1(const void* x, float* y, int64_t n);
void dequantize_row_q8_0(const void* x, float* y, int64_t n);
void dequantize_row_q8_1(const void* x, float* y, int64_t n);

void quantize_row_q4_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, void* y, int64_t n);

}  // namespace qrt
