// NEON kernels of the k-quant super-blocks Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (format/kquants.h) and of Q8_K, their
// activation partner. See neon_util.h for the two builds and the dot product scheme.
//
// A super-block of 256 is eight units of 32 elements, unit u = elements 32u..32u+31, unpacked by quants(x, u)
// into two int8x16 holding the values themselves (Q3_K: 2 bits + high bit - 4, Q6_K: 6 bits - 32). Because
// of the 128-element halves of the layout (kquants.h), unit u of Q2_K, Q3_K and Q6_K is field / quarter t =
// u%4 of half h = u/4: one 32-byte load shifted by 2t; for Q4_K and Q5_K it is the low (u even) or high
// (u odd) nibbles of qs[32(u/2)..], plus bit u of qh for Q5_K. Sub-blocks of 16 (Q2_K, Q3_K, Q6_K: scales
// 2u and 2u+1) or 32 (Q4_K, Q5_K: scale u) multiply their int32 partial sums exactly.
//
// Dequantizing repeats ggml-quants.c dequantize_row_*'s float operations per element: the scale (and min)
// products d*sc, dmin*m first, then d*q (- m). Dot products end with vec_dot_block_*_q8_K's float math.
#include "format/kquants.h"

#include "kernels/dispatch.h"

#if defined(__ARM_NEON)
#include <type_traits>

#include "cpu/neon/neon_util.h"

namespace qrt::neon {
namespace {

int8x16_t as_s8(uint8x16_t v) {
    return vreinterpretq_s8_u8(v);
}

// (v >> shift) & mask per byte, for a run-time shift.
uint8x16_t field(uint8x16_t v, int shift, uint8_t mask) {
    return vandq_u8(vshlq_u8(v, vdupq_n_s8(int8_t(-shift))), vdupq_n_u8(mask));
}

// The 16 int8 lanes of s as int32 out[0..15].
void widen_store(int8x16_t s, int32_t* out) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(s)), hi = vmovl_high_s8(s);
    vst1q_s32(out + 0, vmovl_s16(vget_low_s16(lo)));
    vst1q_s32(out + 4, vmovl_high_s16(lo));
    vst1q_s32(out + 8, vmovl_s16(vget_low_s16(hi)));
    vst1q_s32(out + 12, vmovl_high_s16(hi));
}

// get_scale_min_k4 for all eight sub-blocks at once (ggml's kmask shuffle): bytes 0..7 = scales, 8..15 =
// mins.
uint8x16_t scales_mins_k4(const uint8_t* scales) {
    constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t utmp[4];
    __builtin_memcpy(utmp, scales, 12);
    utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = utmp[1] & kmask1;
    utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
    utmp[2] = uaux;
    utmp[0] &= kmask1;
    return vreinterpretq_u8_u32(vld1q_u32(utmp));
}

// Q3_K's 16 six-bit scales minus their bias 32 (q3_K_scale), byte i = sub-block i.
int8x16_t q3_K_scales(const uint8_t* scales) {
    constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[3], utmp[4];
    __builtin_memcpy(aux, scales, 12);
    utmp[3] = ((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4);
    utmp[2] = ((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4);
    utmp[1] = (aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4);
    utmp[0] = (aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4);
    return vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(utmp)), vdupq_n_s8(32));
}

// ---- per type: the values of unit u, the per super-block state (Row), and the float end of the dot ----
//
// Row: d, dmin (fp16 scales as floats), sc[16] (int32 sub-block scales: 16 of 16 elements, or 8 of 32) and
// the type's mins. finish(row, y, isum) is vec_dot_block_*_q8_K's last line for the exact isum.

struct KQ2_K {
    using X = block_q2_K;
    static constexpr bool kSub16 = true;
    struct Row {
        float d, dmin;
        int32_t sc[16];
        int16x8_t mins[2];
    };
    static void prepare(const X& x, Row& r) {
        const uint8x16_t s = vld1q_u8(x.scales);
        widen_store(as_s8(vandq_u8(s, vdupq_n_u8(0x0F))), r.sc);
        const uint8x16_t m = vshrq_n_u8(s, 4);
        r.mins[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
        r.mins[1] = vreinterpretq_s16_u16(vmovl_high_u8(m));
        r.d = half_to_float(x.d), r.dmin = half_to_float(x.dmin);
    }
    static void quants(const X& x, int u, int8x16_t q[2]) {
        const uint8_t* qs = x.qs + 32 * (u / 4);
        q[0] = as_s8(field(vld1q_u8(qs), 2 * (u % 4), 3));
        q[1] = as_s8(field(vld1q_u8(qs + 16), 2 * (u % 4), 3));
    }
    static float finish(const Row& r, const block_q8_K& y, int32_t isum) {
        const int16x8_t b0 = vld1q_s16(y.bsums), b1 = vld1q_s16(y.bsums + 8);
        int32x4_t s = vmull_s16(vget_low_s16(r.mins[0]), vget_low_s16(b0));
        s = vmlal_high_s16(s, r.mins[0], b0);
        s = vmlal_s16(s, vget_low_s16(r.mins[1]), vget_low_s16(b1));
        s = vmlal_high_s16(s, r.mins[1], b1);
        const float dall = y.d * r.d, dmin = y.d * r.dmin;
        return dall * float(isum) - dmin * float(vaddvq_s32(s));
    }
};

struct KQ3_K {
    using X = block_q3_K;
    static constexpr bool kSub16 = true;
    struct Row {
        float d;
        int32_t sc[16];
    };
    static void prepare(const X& x, Row& r) {
        widen_store(q3_K_scales(x.scales), r.sc);
        r.d = half_to_float(x.d);
    }
    static void quants(const X& x, int u, int8x16_t q[2]) {  // 2 bits | hmask bit u << 2, minus 4
        const uint8_t* qs = x.qs + 32 * (u / 4);
        for (int k = 0; k < 2; ++k) {
            const uint8x16_t lo = field(vld1q_u8(qs + 16 * k), 2 * (u % 4), 3);
            const uint8x16_t hi = vshlq_n_u8(field(vld1q_u8(x.hmask + 16 * k), u, 1), 2);
            q[k] = vsubq_s8(as_s8(vorrq_u8(lo, hi)), vdupq_n_s8(4));
        }
    }
    static float finish(const Row& r, const block_q8_K& y, int32_t isum) { return (r.d * y.d) * float(isum); }
};

// Q4_K and Q5_K: scales and mins of 32-element sub-blocks; Q5_K adds bit u of qh[l] as the fifth bit.
template <typename TX>
struct KQ45_K {
    using X = TX;
    static constexpr bool kSub16 = false;
    struct Row {
        float d, dmin;
        int32_t sc[16];  // 0..7 used
        int16x8_t mins;
    };
    static void prepare(const X& x, Row& r) {
        const uint8x16_t sm = scales_mins_k4(x.scales);
        widen_store(as_s8(sm), r.sc);  // scales <= 63: positive as int8
        r.mins = vreinterpretq_s16_u16(vmovl_high_u8(sm));
        r.d = half_to_float(x.d), r.dmin = half_to_float(x.dmin);
    }
    static void quants(const X& x, int u, int8x16_t q[2]) {
        const uint8_t* qs = x.qs + 32 * (u / 2);
        for (int k = 0; k < 2; ++k) {
            const uint8x16_t v = vld1q_u8(qs + 16 * k);
            uint8x16_t lo = u % 2 ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(0x0F));
            if constexpr (requires { x.qh; })
                lo = vorrq_u8(lo, vshlq_n_u8(field(vld1q_u8(x.qh + 16 * k), u, 1), 4));
            q[k] = as_s8(lo);
        }
    }
    static float finish(const Row& r, const block_q8_K& y, int32_t isum) {
        // summ = sum_j m_j * (bsums[2j] + bsums[2j+1])
        const int16x8_t pairs = vpaddq_s16(vld1q_s16(y.bsums), vld1q_s16(y.bsums + 8));
        int32x4_t s = vmull_s16(vget_low_s16(r.mins), vget_low_s16(pairs));
        s = vmlal_high_s16(s, r.mins, pairs);
        const float d = r.d * y.d, dmin = r.dmin * y.d;
        return d * float(isum) - dmin * float(vaddvq_s32(s));
    }
};
using KQ4_K = KQ45_K<block_q4_K>;
using KQ5_K = KQ45_K<block_q5_K>;

struct KQ6_K {
    using X = block_q6_K;
    static constexpr bool kSub16 = true;
    struct Row {
        float d;
        int32_t sc[16];
    };
    static void prepare(const X& x, Row& r) {
        widen_store(vld1q_s8(x.scales), r.sc);
        r.d = half_to_float(x.d);
    }
    static void quants(const X& x, int u, int8x16_t q[2]) {  // ql nibble | qh field << 4, minus 32
        const int h = u / 4, t = u % 4;
        const uint8_t* ql = x.ql + 64 * h + 32 * (t & 1);
        for (int k = 0; k < 2; ++k) {
            const uint8x16_t l = vld1q_u8(ql + 16 * k);
            const uint8x16_t lo = t < 2 ? vandq_u8(l, vdupq_n_u8(0x0F)) : vshrq_n_u8(l, 4);
            const uint8x16_t hi = vshlq_n_u8(field(vld1q_u8(x.qh + 32 * h + 16 * k), 2 * t, 3), 4);
            q[k] = vsubq_s8(as_s8(vorrq_u8(lo, hi)), vdupq_n_s8(32));
        }
    }
    static float finish(const Row& r, const block_q8_K& y, int32_t isum) { return (r.d * y.d) * float(isum); }
};

// ---- dot products with Q8_K (neon_util.h gemm): per (row, token) an int32x4 of sum_j sc_j * (unit dots),
// reduced once per super-block to the exact isum, then finish(). All exact: |isum| < 256 * 127 * 63 * 32.
template <class K>
struct KQuantDot {
    using X = typename K::X;
    static constexpr int64_t kBlock = 256;
    static constexpr int kRM = 4, kRN = 2;

    template <int RM, int RN>
    static void tile(int64_t nb, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        float acc[RM][RN] = {};
        const int32x4_t zero = vdupq_n_s32(0);
        for (int64_t l = 0; l < nb; ++l) {
            const X* x[RM];
            typename K::Row row[RM];
            for (int i = 0; i < RM; ++i) {
                x[i] = &block_at<X>(a, lda, i, l);
                K::prepare(*x[i], row[i]);
            }
            int32x4_t sumi[RM][RN];
            for (int i = 0; i < RM; ++i)
                for (int j = 0; j < RN; ++j) sumi[i][j] = zero;
            for (int u = 0; u < 8; ++u) {
                int8x16_t q[RM][2];
                for (int i = 0; i < RM; ++i) K::quants(*x[i], u, q[i]);
                for (int j = 0; j < RN; ++j) {
                    const int8_t* yq = block_at<block_q8_K>(b, ldb, j, l).qs + 32 * u;
                    const int8x16_t y0 = vld1q_s8(yq), y1 = vld1q_s8(yq + 16);
                    for (int i = 0; i < RM; ++i) {
                        if constexpr (K::kSub16) {
                            sumi[i][j] = vmlaq_n_s32(sumi[i][j], dot16(zero, q[i][0], y0), row[i].sc[2 * u]);
                            sumi[i][j] =
                                vmlaq_n_s32(sumi[i][j], dot16(zero, q[i][1], y1), row[i].sc[2 * u + 1]);
                        } else {
                            sumi[i][j] = vmlaq_n_s32(sumi[i][j], dot16(dot16(zero, q[i][0], y0), q[i][1], y1),
                                                     row[i].sc[u]);
                        }
                    }
                }
            }
            for (int j = 0; j < RN; ++j) {
                const block_q8_K& y = block_at<block_q8_K>(b, ldb, j, l);
                for (int i = 0; i < RM; ++i) acc[i][j] += K::finish(row[i], y, vaddvq_s32(sumi[i][j]));
            }
        }
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) c[j * ldc + i] = acc[i][j];
    }
};

// ---- dequantize ----

// y = d*sc*q - dmin*m per sub-block (Q2_K, Q4_K, Q5_K: the products formed first, as the reference).
// Sub-blocks of 16 (Q2_K): scale s of lanes k of unit u is sub-block 2u + k.
template <class K>
void dequantize_row(const void* vx, float* y, int64_t n) {
    const typename K::X* x = static_cast<const typename K::X*>(vx);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const typename K::X& b = x[i];
        const float d = half_to_float(b.d);
        float dl[16], ml[16] = {};
        if constexpr (std::is_same_v<K, KQ2_K>) {
            const float min = half_to_float(b.dmin);
            for (int s = 0; s < 16; ++s)
                dl[s] = d * float(b.scales[s] & 0xF), ml[s] = min * float(b.scales[s] >> 4);
        } else if constexpr (std::is_same_v<K, KQ3_K>) {
            int8_t sc[16];
            vst1q_s8(sc, q3_K_scales(b.scales));
            for (int s = 0; s < 16; ++s) dl[s] = d * float(sc[s]);
        } else if constexpr (std::is_same_v<K, KQ6_K>) {
            for (int s = 0; s < 16; ++s) dl[s] = d * float(b.scales[s]);
        } else {  // Q4_K, Q5_K: sub-blocks of 32, both halves of unit u use entry u
            const float min = half_to_float(b.dmin);
            uint8_t sm[16];
            vst1q_u8(sm, scales_mins_k4(b.scales));
            for (int s = 0; s < 8; ++s) dl[s] = d * float(sm[s]), ml[s] = min * float(sm[8 + s]);
        }
        for (int u = 0; u < 8; ++u, y += 32) {
            int8x16_t q[2];
            K::quants(b, u, q);
            for (int k = 0; k < 2; ++k) {
                const int s = K::kSub16 ? 2 * u + k : u;
                if constexpr (std::is_same_v<K, KQ3_K> || std::is_same_v<K, KQ6_K>)
                    store_mul_16(q[k], dl[s], y + 16 * k);
                else
                    store_mul_sub_16(q[k], dl[s], ml[s], y + 16 * k);
            }
        }
    }
}

// ---- Q8_K ----

// y = d * q (the reference's `b.d * b.qs[j]`).
void dequantize_row_q8_K(const void* vx, float* y, int64_t n) {
    const block_q8_K* x = static_cast<const block_q8_K*>(vx);
    for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K)
        for (int k = 0; k < QK_K; k += 16) store_mul_16(vld1q_s8(x[b].qs + k), x[b].d, y + k);
}

// quantize_row_q8_K_ref bit for bit: max = the first value of largest magnitude (NaNs never win: FMAXNM),
// iscale = -127/max, q = min(127, round half to even(iscale * x)) (FCVTNS is nearest_int in its range),
// bsums = sums of 16, d = 1/iscale; an all-zero block is all zeros.
void quantize_row_q8_K(const float* x, void* vy, int64_t n) {
    block_q8_K* y = static_cast<block_q8_K*>(vy);
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        float32x4_t amax4 = vdupq_n_f32(0.0f);
        for (int k = 0; k < QK_K; k += 4) amax4 = vmaxnmq_f32(amax4, vabsq_f32(vld1q_f32(x + k)));
        const float amax = vmaxnmvq_f32(amax4);
        if (amax == 0.0f) {
            __builtin_memset(&y[b], 0, sizeof(block_q8_K));
            continue;
        }
        int first = 0;
        while (__builtin_fabsf(x[first]) != amax) ++first;
        const float iscale = -127.0f / x[first];
        const int32x4_t lim = vdupq_n_s32(127);
        for (int k = 0; k < QK_K; k += 16) {
            int32x4_t q[4];
            for (int v = 0; v < 4; ++v)
                q[v] = vminq_s32(lim, vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 4 * v), iscale)));
            y[b].bsums[k / 16] = int16_t(vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3]))));
            const int16x8_t h0 = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            const int16x8_t h1 = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            vst1q_s8(y[b].qs + k, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
        }
        y[b].d = 1.0f / iscale;
    }
}

const kernels::Registrar q2_K_registrar(Isa::Neon, TypeId::Q2_K,
                                        for_this_build({.dequantize_row = dequantize_row<KQ2_K>,
                                                        .vec_dot = vec_dot<KQuantDot<KQ2_K>>,
                                                        .gemm = gemm<KQuantDot<KQ2_K>>}));
const kernels::Registrar q3_K_registrar(Isa::Neon, TypeId::Q3_K,
                                        for_this_build({.dequantize_row = dequantize_row<KQ3_K>,
                                                        .vec_dot = vec_dot<KQuantDot<KQ3_K>>,
                                                        .gemm = gemm<KQuantDot<KQ3_K>>}));
const kernels::Registrar q4_K_registrar(Isa::Neon, TypeId::Q4_K,
                                        for_this_build({.dequantize_row = dequantize_row<KQ4_K>,
                                                        .vec_dot = vec_dot<KQuantDot<KQ4_K>>,
                                                        .gemm = gemm<KQuantDot<KQ4_K>>}));
const kernels::Registrar q5_K_registrar(Isa::Neon, TypeId::Q5_K,
                                        for_this_build({.dequantize_row = dequantize_row<KQ5_K>,
                                                        .vec_dot = vec_dot<KQuantDot<KQ5_K>>,
                                                        .gemm = gemm<KQuantDot<KQ5_K>>}));
const kernels::Registrar q6_K_registrar(Isa::Neon, TypeId::Q6_K,
                                        for_this_build({.dequantize_row = dequantize_row<KQ6_K>,
                                                        .vec_dot = vec_dot<KQuantDot<KQ6_K>>,
                                                        .gemm = gemm<KQuantDot<KQ6_K>>}));
const kernels::Registrar q8_K_registrar(Isa::Neon, TypeId::Q8_K,
                                        for_this_build({.dequantize_row = dequantize_row_q8_K,
                                                        .quantize_row = quantize_row_q8_K}));

}  // namespace
}  // namespace qrt::neon

#endif  // __ARM_NEON
