// NEON kernels of the 32-element legacy blocks Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (format/legacy.h), and the
// quantizers of their activation partners Q8_0 and Q8_1. See neon_util.h for the two builds and the dot
// product scheme.
//
// A block is unpacked into two int8x16 in element order: elements 0..15 are the low nibbles of qs, 16..31
// the high nibbles; Q5's fifth bit of element e is bit e of the little-endian word qh, spread to bytes by a
// table lookup and a bit test (the trick of ggml-cpu/arch/arm/quants.c, written as vtstq). Dequantizing
// widens the lanes to float and scales them with the reference's operations (`q*d`, `q*d + m`).
#include "format/legacy.h"

#include "kernels/dispatch.h"

#if defined(__ARM_NEON)
#include "cpu/neon/neon_util.h"

namespace qrt::neon {
namespace {

// 16 bytes of nibbles -> elements 0..15 (low nibbles) and 16..31 (high nibbles), unsigned.
void nibbles(const uint8_t* qs, uint8x16_t& lo, uint8x16_t& hi) {
    const uint8x16_t v = vld1q_u8(qs);
    lo = vandq_u8(v, vdupq_n_u8(0x0F));
    hi = vshrq_n_u8(v, 4);
}

// Bit e of the little-endian 32-bit qh as 0x10 in byte e, for e in 0..15 (lo) and 16..31 (hi).
void fifth_bits(const uint8_t* qh, uint8x16_t& lo, uint8x16_t& hi) {
    uint32_t w;
    __builtin_memcpy(&w, qh, sizeof w);
    const uint8x16_t bytes = vreinterpretq_u8_u32(vdupq_n_u32(w));
    const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
    const uint8x16_t sel_lo = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));  // byte e takes qh byte e/8
    const uint8x16_t sel_hi = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
    const uint8x16_t m5 = vdupq_n_u8(0x10);
    lo = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, sel_lo), bit), m5);
    hi = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, sel_hi), bit), m5);
}

int8x16_t minus(uint8x16_t q, uint8_t offset) {
    return vreinterpretq_s8_u8(vsubq_u8(q, vdupq_n_u8(offset)));
}

int8x16_t as_s8(uint8x16_t q) {
    return vreinterpretq_s8_u8(q);
}

// The values of a block: v[0] = elements 0..15, v[1] = 16..31; int8 (Q4_0: q-8 and Q5_0: q-16 are signed,
// Q4_1 / Q5_1's unsigned q <= 31 and Q8_0's int8 are as stored).
void values(const block_q4_0& x, int8x16_t v[2]) {
    uint8x16_t lo, hi;
    nibbles(x.qs, lo, hi);
    v[0] = minus(lo, 8), v[1] = minus(hi, 8);
}
void values(const block_q4_1& x, int8x16_t v[2]) {
    uint8x16_t lo, hi;
    nibbles(x.qs, lo, hi);
    v[0] = as_s8(lo), v[1] = as_s8(hi);
}
void values(const block_q5_0& x, int8x16_t v[2]) {
    uint8x16_t lo, hi, hlo, hhi;
    nibbles(x.qs, lo, hi);
    fifth_bits(x.qh, hlo, hhi);
    v[0] = minus(vorrq_u8(lo, hlo), 16), v[1] = minus(vorrq_u8(hi, hhi), 16);
}
void values(const block_q5_1& x, int8x16_t v[2]) {
    uint8x16_t lo, hi, hlo, hhi;
    nibbles(x.qs, lo, hi);
    fifth_bits(x.qh, hlo, hhi);
    v[0] = as_s8(vorrq_u8(lo, hlo)), v[1] = as_s8(vorrq_u8(hi, hhi));
}
void values(const block_q8_0& x, int8x16_t v[2]) {
    v[0] = vld1q_s8(x.qs), v[1] = vld1q_s8(x.qs + 16);
}

// y = q*d for the types without a min, y = q*d + m for those with one (legacy.h dequantize_block_*).
template <typename X>
void dequantize_row(const void* vx, float* y, int64_t n) {
    const X* x = static_cast<const X*>(vx);
    for (int64_t i = 0; i < n / 32; ++i, y += 32) {
        int8x16_t v[2];
        values(x[i], v);
        const float d = half_to_float(x[i].d);
        if constexpr (requires { x[i].m; }) {
            const float m = half_to_float(x[i].m);
            store_mul_add_16(v[0], d, m, y);
            store_mul_add_16(v[1], d, m, y + 16);
        } else {
            store_mul_16(v[0], d, y);
            store_mul_16(v[1], d, y + 16);
        }
    }
}

// ---- dot products (neon_util.h BlockDot): the exact integer sum, then legacy.h vec_dot_block_*'s floats
// ----

template <typename TX>
struct Unpacked {
    int8x16_t v[2];
    float d, m;  // m: Q4_1 / Q5_1 only
    static void unpack(const TX& x, Unpacked& r) {
        values(x, r.v);
        r.d = half_to_float(x.d);
        if constexpr (requires { x.m; }) r.m = half_to_float(x.m);
    }
    int32_t sum(const int8_t* qs) const { return dot32(v[0], v[1], vld1q_s8(qs), vld1q_s8(qs + 16)); }
};

template <typename TX, int kRM_ = 4, int kRN_ = 2>
struct Legacy {
    using X = TX;
    static constexpr int kRM = kRM_, kRN = kRN_;
    using Row = Unpacked<TX>;
    static void unpack(const X& x, Row& r) { Row::unpack(x, r); }
};

struct KQ4_0 : Legacy<block_q4_0> {
    using Y = block_q8_0;
    static float dot(const Row& r, const Y& y) { return float(r.sum(y.qs)) * r.d * half_to_float(y.d); }
};
struct KQ5_0 : Legacy<block_q5_0> {
    using Y = block_q8_0;
    static float dot(const Row& r, const Y& y) { return (r.d * half_to_float(y.d)) * float(r.sum(y.qs)); }
};
struct KQ8_0 : Legacy<block_q8_0> {
    using Y = block_q8_0;
    static float dot(const Row& r, const Y& y) { return float(r.sum(y.qs)) * (r.d * half_to_float(y.d)); }
};
// Q4_1 / Q5_1: (dx*dy) * sumi + mx * sy, sy = Q8_1's cached fp16 d * sum(qs).
template <typename TX>
struct KMin : Legacy<TX> {
    using Y = block_q8_1;
    using Row = typename Legacy<TX>::Row;
    static float dot(const Row& r, const Y& y) {
        return (r.d * half_to_float(y.d)) * float(r.sum(y.qs)) + r.m * half_to_float(y.s);
    }
};
using KQ4_1 = KMin<block_q4_1>;
using KQ5_1 = KMin<block_q5_1>;

// ---- activation quantizers: quantize_row_q8_0_ref / quantize_row_q8_1_ref, bit for bit ----

// One block of 32: amax = max |x| ignoring NaNs (FMAXNM, as std::max(amax, |x|) does), d = amax / 127,
// q = round(x * (1/d)) half away from zero (FCVTAS is std::round). Returns d; writes qs and sum(qs).
float quantize_block_q8(const float* x, int8_t* qs, int32_t* sum) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; ++k) {
        v[k] = vld1q_f32(x + 4 * k);
        amax = vmaxnmq_f32(amax, vabsq_f32(v[k]));
    }
    const float d = vmaxnmvq_f32(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t s = vdupq_n_s32(0);
    int16x8_t h[4];
    for (int k = 0; k < 4; ++k) {
        const int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k], id));
        const int32x4_t b = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k + 1], id));
        s = vaddq_s32(s, vaddq_s32(a, b));
        h[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    }
    vst1q_s8(qs, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
    vst1q_s8(qs + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
    *sum = vaddvq_s32(s);
    return d;
}

void quantize_row_q8_0(const float* x, void* vy, int64_t n) {
    block_q8_0* y = static_cast<block_q8_0*>(vy);
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        int32_t sum;
        y[b].d = float_to_half(quantize_block_q8(x + b * QK8_0, y[b].qs, &sum));
    }
}

void quantize_row_q8_1(const float* x, void* vy, int64_t n) {
    block_q8_1* y = static_cast<block_q8_1*>(vy);
    for (int64_t b = 0; b < n / QK8_1; ++b) {
        int32_t sum;
        const float d = quantize_block_q8(x + b * QK8_1, y[b].qs, &sum);
        y[b].d = float_to_half(d);
        y[b].s = float_to_half(float(sum) * d);
    }
}

const kernels::Registrar q4_0_registrar(Isa::Neon, TypeId::Q4_0,
                                        for_this_build({.dequantize_row = dequantize_row<block_q4_0>,
                                                        .vec_dot = vec_dot<BlockDot<KQ4_0>>,
                                                        .gemm = gemm<BlockDot<KQ4_0>>}));
const kernels::Registrar q4_1_registrar(Isa::Neon, TypeId::Q4_1,
                                        for_this_build({.dequantize_row = dequantize_row<block_q4_1>,
                                                        .vec_dot = vec_dot<BlockDot<KQ4_1>>,
                                                        .gemm = gemm<BlockDot<KQ4_1>>}));
const kernels::Registrar q5_0_registrar(Isa::Neon, TypeId::Q5_0,
                                        for_this_build({.dequantize_row = dequantize_row<block_q5_0>,
                                                        .vec_dot = vec_dot<BlockDot<KQ5_0>>,
                                                        .gemm = gemm<BlockDot<KQ5_0>>}));
const kernels::Registrar q5_1_registrar(Isa::Neon, TypeId::Q5_1,
                                        for_this_build({.dequantize_row = dequantize_row<block_q5_1>,
                                                        .vec_dot = vec_dot<BlockDot<KQ5_1>>,
                                                        .gemm = gemm<BlockDot<KQ5_1>>}));
const kernels::Registrar q8_0_registrar(Isa::Neon, TypeId::Q8_0,
                                        for_this_build({.dequantize_row = dequantize_row<block_q8_0>,
                                                        .quantize_row = quantize_row_q8_0,
                                                        .vec_dot = vec_dot<BlockDot<KQ8_0>>,
                                                        .gemm = gemm<BlockDot<KQ8_0>>}));
const kernels::Registrar q8_1_registrar(Isa::Neon, TypeId::Q8_1,
                                        for_this_build({.quantize_row = quantize_row_q8_1}));

}  // namespace
}  // namespace qrt::neon

#endif  // __ARM_NEON
