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

// Dot products with the activation format (the registry's vec_dot_type), ggml-cpu/quants.c
// ggml_vec_dot_<x>_<y>_generic: per block an exact integer sum of quant products, then one float scaling in
// ggml's operand order. Each returns one block's contribution; the row functions below add them up in order.
// Q4_1/Q5_1 get their min term from Q8_1's cached s = fp16(d * sum(qs)), rounded to fp16 as ggml stores it,
// so their dot differs from a dot of the dequantized numbers by m * (s - d * sum(qs)) per block.
QRT_HD float vec_dot_block_q4_0_q8_0(const block_q4_0& x, const block_q8_0& y) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_0 / 2; ++j) {
        sumi0 += ((x.qs[j] & 0x0F) - 8) * y.qs[j];
        sumi1 += ((x.qs[j] >> 4) - 8) * y.qs[j + QK8_0 / 2];
    }
    return (sumi0 + sumi1) * fp16_to_fp32(x.d) * fp16_to_fp32(y.d);
}

QRT_HD float vec_dot_block_q4_1_q8_1(const block_q4_1& x, const block_q8_1& y) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_1 / 2; ++j) {
        sumi0 += (x.qs[j] & 0x0F) * y.qs[j];
        sumi1 += (x.qs[j] >> 4) * y.qs[j + QK8_1 / 2];
    }
    return (fp16_to_fp32(x.d) * fp16_to_fp32(y.d)) * (sumi0 + sumi1) + fp16_to_fp32(x.m) * fp16_to_fp32(y.s);
}

QRT_HD float vec_dot_block_q5_0_q8_0(const block_q5_0& x, const block_q8_0& y) {
    const uint32_t qh = load_qh(x.qh);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_0 / 2; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        sumi0 += (((x.qs[j] & 0x0F) | h0) - 16) * y.qs[j];
        sumi1 += (((x.qs[j] >> 4) | h1) - 16) * y.qs[j + QK8_0 / 2];
    }
    return (fp16_to_fp32(x.d) * fp16_to_fp32(y.d)) * (sumi0 + sumi1);
}

QRT_HD float vec_dot_block_q5_1_q8_1(const block_q5_1& x, const block_q8_1& y) {
    const uint32_t qh = load_qh(x.qh);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_1 / 2; ++j) {
        const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        sumi0 += ((x.qs[j] & 0x0F) | h0) * y.qs[j];
        sumi1 += ((x.qs[j] >> 4) | h1) * y.qs[j + QK8_1 / 2];
    }
    return (fp16_to_fp32(x.d) * fp16_to_fp32(y.d)) * (sumi0 + sumi1) + fp16_to_fp32(x.m) * fp16_to_fp32(y.s);
}

QRT_HD float vec_dot_block_q8_0_q8_0(const block_q8_0& x, const block_q8_0& y) {
    int sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += x.qs[j] * y.qs[j];
    return sumi * (fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
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

// Dot of n weights x (blocks of the first type) with n activations y (blocks of the second): sum of the
// vec_dot_block_* above, in block order, in float (ggml_vec_dot_<x>_<y>_generic).
float vec_dot_q4_0_q8_0(int64_t n, const void* x, const void* y);
float vec_dot_q4_1_q8_1(int64_t n, const void* x, const void* y);
float vec_dot_q5_0_q8_0(int64_t n, const void* x, const void* y);
float vec_dot_q5_1_q8_1(int64_t n, const void* x, const void* y);
float vec_dot_q8_0_q8_0(int64_t n, const void* x, const void* y);

// sums[l] = the sum of block l's 32 int8 quants, for the n / 32 blocks of a Q8_0 row: what packed kernels of
// offset types subtract (sum (q - o) y = sum q y - o sum y) without reducing the activations per row.
void q8_0_block_sums(const void* x, int64_t n, int32_t* sums);

}  // namespace qrt
