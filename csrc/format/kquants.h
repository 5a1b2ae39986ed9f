// The k-quant super-blocks of 256 elements: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the compute-only Q8_K.
//
// Layouts are ggml-common.h's, byte for byte (FORMATS.md §2.1). A super-block holds 16 sub-blocks of 16
// (Q2_K, Q3_K, Q6_K) or 8 sub-blocks of 32 (Q4_K, Q5_K); each sub-block has a small integer scale (and for
// Q2/Q4/Q5 a min) that multiplies the fp16 super-block scale d (dmin). The quantized values are stored in
// 128-element halves: within a half, byte l of a bit-plane array holds element l (+32, +64, +96) in
// successive bit fields, which is what lets SIMD kernels unpack 32 lanes with one shift and mask.
//
//   Q2_K: y = d*(sc&15)*q - dmin*(sc>>4),   q = 2 bits,               sc = scales[e/16]
//   Q3_K: y = d*(sc-32)*q,                  q = 2 bits + hmask bit - 4, sc = 6 bits packed in scales[12]
//   Q4_K: y = d*sc*q - dmin*m,              q = 4 bits,               sc, m = 6 bits packed in scales[12]
//   Q5_K: as Q4_K with a fifth bit from qh
//   Q6_K: y = d*sc*(q-32),                  q = 4 bits (ql) + 2 bits (qh), sc = int8 scales[e/16]
//   Q8_K: y = d*qs, d in fp32; bsums[j] = sum of qs[16j..16j+15] (the activation side of every k-quant dot)
//
// The per-block dequantizers below are QRT_HD so CUDA decodes with the same code; their float expressions
// are ggml-quants.c dequantize_row_*'s, in its order, so the host build (-ffp-contract=off) is bit-exact.
#pragma once

#include "format/common.h"

namespace qrt {

struct block_q2_K {
    uint8_t scales[QK_K / 16];  // low nibble: scale, high nibble: min, per 16-element sub-block
    uint8_t qs[QK_K / 4];       // 2-bit quants
    half_bits d;                // super-block scale of the scales
    half_bits dmin;             // super-block scale of the mins
};
static_assert(sizeof(block_q2_K) == 84, "wrong q2_K block size");

struct block_q3_K {
    uint8_t hmask[QK_K / 8];  // high bit of each quant: element e is bit e/32 of hmask[e%32]
    uint8_t qs[QK_K / 4];     // low 2 bits of each quant
    uint8_t scales[12];       // 16 scales of 6 bits (see q3_K_scale)
    half_bits d;
};
static_assert(sizeof(block_q3_K) == 110, "wrong q3_K block size");

struct block_q4_K {
    half_bits d;
    half_bits dmin;
    uint8_t scales[K_SCALE_SIZE];  // 8 scales + 8 mins of 6 bits (see get_scale_min_k4)
    uint8_t qs[QK_K / 2];          // 4-bit quants
};
static_assert(sizeof(block_q4_K) == 144, "wrong q4_K block size");

struct block_q5_K {
    half_bits d;
    half_bits dmin;
    uint8_t scales[K_SCALE_SIZE];  // as Q4_K
    uint8_t qh[QK_K / 8];          // fifth bit: element e is bit e/32 of qh[e%32]
    uint8_t qs[QK_K / 2];          // low 4 bits, laid out as Q4_K's qs
};
static_assert(sizeof(block_q5_K) == 176, "wrong q5_K block size");

struct block_q6_K {
    uint8_t ql[QK_K / 2];      // low 4 bits
    uint8_t qh[QK_K / 4];      // high 2 bits
    int8_t scales[QK_K / 16];  // 8-bit signed scale per 16-element sub-block
    half_bits d;
};
static_assert(sizeof(block_q6_K) == 210, "wrong q6_K block size");

struct block_q8_K {
    float d;  // fp32, unlike every other block's scale
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];  // sums of each 16 quants, for the min terms of Q2_K/Q4_K/Q5_K dots
};
static_assert(sizeof(block_q8_K) == 292, "wrong q8_K block size");

// Q4_K/Q5_K's 12 scale bytes hold 8 six-bit scales and 8 six-bit mins: sub-blocks 0..3 sit in the low 6
// bits of bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 keep their low 4 bits in the nibbles of
// bytes 8..11 and their top 2 bits in the spare top bits of bytes 0..7. (ggml-quants.c get_scale_min_k4)
QRT_HD void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q3_K's 6-bit scale of sub-block i (0..15), minus its bias of 32: the low 4 bits are the low (i < 8) or
// high (i >= 8) nibble of scales[i%8], the top 2 bits are field i/4 of scales[8 + i%4].
QRT_HD int q3_K_scale(const uint8_t* scales, int i) {
    const int lo = i < 8 ? scales[i] & 0xF : scales[i - 8] >> 4;
    const int hi = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | hi << 4) - 32;
}

QRT_HD void dequantize_block_q2_K(const block_q2_K& b, float* y) {
    const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
    for (int h = 0; h < 2; ++h) {  // 128-element halves
        const uint8_t* q = b.qs + 32 * h;
        for (int t = 0; t < 4; ++t) {      // 2-bit field t of each byte
            for (int k = 0; k < 2; ++k) {  // two 16-element sub-blocks per field
                const uint8_t sc = b.scales[8 * h + 2 * t + k];
                const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((q[16 * k + l] >> (2 * t)) & 3) - ml;
            }
        }
    }
}

QRT_HD void dequantize_block_q3_K(const block_q3_K& b, float* y) {
    const float d_all = fp16_to_fp32(b.d);
    for (int h = 0; h < 2; ++h) {
        const uint8_t* q = b.qs + 32 * h;
        for (int t = 0; t < 4; ++t) {
            const uint8_t hbit = uint8_t(1 << (4 * h + t));  // hmask bit of element e is e/32
            for (int k = 0; k < 2; ++k) {
                const float dl = d_all * q3_K_scale(b.scales, 8 * h + 2 * t + k);
                for (int l = 16 * k; l < 16 * k + 16; ++l)
                    *y++ = dl * (((q[l] >> (2 * t)) & 3) - ((b.hmask[l] & hbit) ? 0 : 4));
            }
        }
    }
}

QRT_HD void dequantize_block_q4_K(const block_q4_K& b, float* y) {
    const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
    const uint8_t* q = b.qs;
    for (int c = 0; c < 4; ++c, q += 32) {  // 64-element chunks: low nibbles, then high nibbles
        uint8_t sc, m;
        get_scale_min_k4(2 * c, b.scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(2 * c + 1, b.scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
}

QRT_HD void dequantize_block_q5_K(const block_q5_K& b, float* y) {
    const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
    const uint8_t* ql = b.qs;
    for (int c = 0; c < 4; ++c, ql += 32) {
        const uint8_t u1 = uint8_t(1 << (2 * c)), u2 = uint8_t(2 << (2 * c));
        uint8_t sc, m;
        get_scale_min_k4(2 * c, b.scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(2 * c + 1, b.scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (b.qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
    }
}

QRT_HD void dequantize_block_q6_K(const block_q6_K& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    for (int h = 0; h < 2; ++h, y += 128) {
        const uint8_t* ql = b.ql + 64 * h;
        const uint8_t* qh = b.qh + 32 * h;
        const int8_t* sc = b.scales + 8 * h;
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            // ggml: d * sc * q, i.e. (d*sc)*q
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

QRT_HD void dequantize_block_q8_K(const block_q8_K& b, float* y) {
    for (int j = 0; j < QK_K; ++j) y[j] = b.d * b.qs[j];
}

// Dot products with Q8_K activations, ggml-cpu/quants.c ggml_vec_dot_<x>_q8_K_generic: per super-block the
// exact integer sums sum_j sc_j * sum_{i in j} q_i * q8_i (and, for types with mins, sum_j m_j * bsum_j from
// Q8_K's cached 16-element sums), then `d * sumi - dmin * summ` with d = fp16(x.d) * y.d. Each returns one
// super-block's contribution. ggml's generic Q3_K..Q6_K spread sumi over 8 int32/float lanes (so compilers
// vectorize it) and add the lanes at the very end; that changes only the float rounding, not the math.
// Element e of a super-block: h = e/128, t = (e%128)/32, l = e%32, sub-block of 16 = e/16 = 8h + 2t + l/16.
QRT_HD float vec_dot_block_q2_K_q8_K(const block_q2_K& x, const block_q8_K& y) {
    int summs = 0;
    for (int j = 0; j < QK_K / 16; ++j) summs += y.bsums[j] * (x.scales[j] >> 4);
    int isum = 0;
    for (int h = 0; h < 2; ++h) {
        const uint8_t* q2 = x.qs + 32 * h;
        for (int t = 0; t < 4; ++t) {
            const int8_t* q8 = y.qs + 128 * h + 32 * t;
            for (int k = 0; k < 2; ++k) {
                int isuml = 0;
                for (int l = 16 * k; l < 16 * k + 16; ++l) isuml += q8[l] * ((q2[l] >> (2 * t)) & 3);
                isum += (x.scales[8 * h + 2 * t + k] & 0xF) * isuml;
            }
        }
    }
    const float dall = y.d * fp16_to_fp32(x.d);
    const float dmin = y.d * fp16_to_fp32(x.dmin);
    return dall * isum - dmin * summs;
}

QRT_HD float vec_dot_block_q3_K_q8_K(const block_q3_K& x, const block_q8_K& y) {
    int isum = 0;
    for (int h = 0; h < 2; ++h) {
        const uint8_t* q3 = x.qs + 32 * h;
        for (int t = 0; t < 4; ++t) {
            const int8_t* q8 = y.qs + 128 * h + 32 * t;
            const uint8_t hbit = uint8_t(1 << (4 * h + t));
            for (int k = 0; k < 2; ++k) {
                int isuml = 0;
                for (int l = 16 * k; l < 16 * k + 16; ++l)
                    isuml += q8[l] * (((q3[l] >> (2 * t)) & 3) - ((x.hmask[l] & hbit) ? 0 : 4));
                isum += q3_K_scale(x.scales, 8 * h + 2 * t + k) * isuml;
            }
        }
    }
    const float d = fp16_to_fp32(x.d) * y.d;
    return d * isum;
}

QRT_HD float vec_dot_block_q4_K_q8_K(const block_q4_K& x, const block_q8_K& y) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < QK_K / 32; ++j) {  // sub-blocks of 32: low (j even) / high (j odd) nibbles of qs
        uint8_t sc, m;
        get_scale_min_k4(j, x.scales, &sc, &m);
        const uint8_t* q4 = x.qs + 32 * (j / 2);
        const int8_t* q8 = y.qs + 32 * j;
        const int shift = 4 * (j % 2);
        int s = 0;
        for (int l = 0; l < 32; ++l) s += ((q4[l] >> shift) & 0xF) * q8[l];
        sumi += sc * s;
        summ += m * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(x.d) * y.d;
    const float dmin = fp16_to_fp32(x.dmin) * y.d;
    return d * sumi - dmin * summ;
}

QRT_HD float vec_dot_block_q5_K_q8_K(const block_q5_K& x, const block_q8_K& y) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < QK_K / 32; ++j) {  // as Q4_K, plus bit j of qh[l] as the fifth bit
        uint8_t sc, m;
        get_scale_min_k4(j, x.scales, &sc, &m);
        const uint8_t* q4 = x.qs + 32 * (j / 2);
        const int8_t* q8 = y.qs + 32 * j;
        const int shift = 4 * (j % 2);
        int s = 0;
        for (int l = 0; l < 32; ++l) s += (((q4[l] >> shift) & 0xF) | (((x.qh[l] >> j) & 1) << 4)) * q8[l];
        sumi += sc * s;
        summ += m * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(x.d) * y.d;
    const float dmin = fp16_to_fp32(x.dmin) * y.d;
    return d * sumi - dmin * summ;
}

QRT_HD float vec_dot_block_q6_K_q8_K(const block_q6_K& x, const block_q8_K& y) {
    int sumi = 0;
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = x.ql + 64 * h;
        const uint8_t* qh = x.qh + 32 * h;
        for (int t = 0; t < 4; ++t) {
            const uint8_t* lo = ql + 32 * (t & 1);  // t = 0, 1: low nibbles; t = 2, 3: high nibbles
            const int8_t* q8 = y.qs + 128 * h + 32 * t;
            for (int k = 0; k < 2; ++k) {
                int s = 0;
                for (int l = 16 * k; l < 16 * k + 16; ++l) {
                    const int q = (((lo[l] >> (4 * (t / 2))) & 0xF) | (((qh[l] >> (2 * t)) & 3) << 4)) - 32;
                    s += q * q8[l];
                }
                sumi += x.scales[8 * h + 2 * t + k] * s;
            }
        }
    }
    const float d = fp16_to_fp32(x.d) * y.d;
    return d * sumi;
}

// Row functions over n elements (n a multiple of QK_K). Host only; the registry points at these.
void dequantize_row_q2_K(const void* x, float* y, int64_t n);
void dequantize_row_q3_K(const void* x, float* y, int64_t n);
void dequantize_row_q4_K(const void* x, float* y, int64_t n);
void dequantize_row_q5_K(const void* x, float* y, int64_t n);
void dequantize_row_q6_K(const void* x, float* y, int64_t n);
void dequantize_row_q8_K(const void* x, float* y, int64_t n);

// ggml-quants.c quantize_row_*_ref: what llama-quantize writes when it has no importance matrix.
void quantize_row_q2_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q3_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, void* y, int64_t n);
// Also writes bsums = 0 for an all-zero block, which ggml leaves unwritten.
void quantize_row_q8_K_ref(const float* x, void* y, int64_t n);

// Dot of n weights x with n Q8_K activations y: the vec_dot_block_* above summed in block order, in float.
float vec_dot_q2_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q3_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q4_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q5_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q6_K_q8_K(int64_t n, const void* x, const void* y);

// The searches and packing the reference quantizers share with the importance-weighted ones
// (format/weighted.cpp), in kquants.cpp.
// ggml's make_qkx2_quants (and, with use_mad false, make_qkx3_quants): x ~ scale*L + min, L in 0..nmax,
// min <= 0, by weighted error; returns scale, *the_min = -min.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
// 2-bit L (0..3) of one super-block into Q2_K/Q3_K's qs.
void pack_2bit(const uint8_t* L, uint8_t* qs);

}  // namespace qrt
