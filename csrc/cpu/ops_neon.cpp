// NEON versions of the ops that cost time per token (cpu/ops.h): silu_mul and attention_head, the same
// algorithms as ops_avx2.cpp on 4-lane vectors. NEON is part of every AArch64 CPU, so this file needs no
// flags of its own; ops.cpp calls these when active_isa() is Neon.
//
// exp is Cephes' expf polynomial (as in ggml's and ops_avx2.cpp's vector exps): x = n*ln2 + r with |r| <=
// ln2/2, e^r by a degree-6 polynomial, 2^n through the exponent bits; about 2 ulp from expf on [-87, 88].
#include "cpu/ops.h"
#include "format/legacy.h"

#if defined(QRT_HAVE_NEON)
#include <arm_neon.h>

#include <cstdint>

namespace qrt::neon {

namespace {

float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(x, vdupq_n_f32(88.3762626647949f));
    x = vmaxq_f32(x, vdupq_n_f32(-87.3365447505531f));  // e^x >= the smallest normal float
    const float32x4_t n = vrndmq_f32(vfmaq_f32(vdupq_n_f32(0.5f), x, vdupq_n_f32(1.44269504088896341f)));
    x = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    x = vfmsq_f32(x, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
    y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, x);
    y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, x);
    y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, x);
    y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, x);
    y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, x);
    y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0f)), y, vmulq_f32(x, x));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

// One e^x for a scalar through the vector path, for the tails.
float exp1(float x) {
    return vgetq_lane_f32(exp4(vdupq_n_f32(x)), 0);
}

float32x4_t load_half4(const half_bits* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// The unnormalized softmax of n scores, in place: scores[t] = e^(scores[t] - max); returns 1 / their sum.
// Scores before `first` (masked, -inf) become exactly 0 (exp4 clamps: e^-inf is the smallest normal there).
float softmax_exp(float* scores, int n, float max, int first) {
    float32x4_t vsum = vdupq_n_f32(0.0f);
    const float32x4_t m = vdupq_n_f32(max);
    int t = 0;
    for (; t + 4 <= n; t += 4) {
        const float32x4_t p = exp4(vsubq_f32(vld1q_f32(scores + t), m));
        vst1q_f32(scores + t, p);
        vsum = vaddq_f32(vsum, p);
    }
    float sum = vaddvq_f32(vsum);
    for (; t < n; ++t) sum += scores[t] = exp1(scores[t] - max);
    for (t = 0; t < first; ++t) scores[t] = 0.0f;
    return 1.0f / sum;
}

// Token t's row of kv_head in `pool` (Q8_0 or Q4_0) as head_dim floats, the values dequantize_block_q8_0
// / _q4_0 give (format/legacy.h): an exact int -> float conversion and one multiply by d.
void dequantize_row(float* dst, const uint8_t* pool, TypeId type, const PagedKv& kv, int kv_head, int t) {
    const int hd = kv.head_dim, bs = kv.block_size;
    const int64_t row = kv_row_bytes(type, hd);
    const uint8_t* src =
        pool + (int64_t(kv.block_table[t / bs]) * kv.n_kv_head * bs + int64_t(kv_head) * bs + t % bs) * row;
    for (int j = 0; j < hd / 32; ++j, dst += 32) {
        int8x16_t x0, x1;  // values 0..15, 16..31
        float d;
        if (type == TypeId::Q8_0) {
            const block_q8_0& b = reinterpret_cast<const block_q8_0*>(src)[j];
            d = fp16_to_fp32(b.d);
            x0 = vld1q_s8(b.qs);
            x1 = vld1q_s8(b.qs + 16);
        } else {
            const block_q4_0& b = reinterpret_cast<const block_q4_0*>(src)[j];
            d = fp16_to_fp32(b.d);
            const uint8x16_t raw = vld1q_u8(b.qs);
            x0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
            x1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), vdupq_n_s8(8));
        }
        const int16x8_t w[4] = {vmovl_s8(vget_low_s8(x0)), vmovl_s8(vget_high_s8(x0)),
                                vmovl_s8(vget_low_s8(x1)), vmovl_s8(vget_high_s8(x1))};
        for (int i = 0; i < 4; ++i) {
            vst1q_f32(dst + 8 * i, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(w[i]))), d));
            vst1q_f32(dst + 8 * i + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(w[i]))), d));
        }
    }
}

// A row of K or V as floats: f16 widened, Q8_0 / Q4_0 dequantized.
void load_row(float* dst, const uint8_t* pool, TypeId type, const PagedKv& kv, int kv_head, int t) {
    if (type != TypeId::F16) return dequantize_row(dst, pool, type, kv, kv_head, t);
    const int hd = kv.head_dim, bs = kv.block_size;
    const half_bits* src =
        reinterpret_cast<const half_bits*>(pool) +
        (int64_t(kv.block_table[t / bs]) * kv.n_kv_head * bs + int64_t(kv_head) * bs + t % bs) * hd;
    for (int d = 0; d < hd; d += 4) vst1q_f32(dst + d, load_half4(src + d));
}

// attention_head over a cache with a quantized K or V: each row dequantized into a buffer first, then the
// f16 version's arithmetic (two 4-lane accumulators per score, V in head_dim/4 vectors).
void attention_head_quantized(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv,
                              float scale, float* scores) {
    const int hd = kv.head_dim, nv = hd / 4;
    float32x4_t qv[kMaxHeadDim / 4];
    for (int v = 0; v < nv; ++v) qv[v] = vld1q_f32(q + 4 * v);
    alignas(16) float row[kMaxHeadDim];
    const int first = kv.first_key(n_kv);
    float max = -__builtin_inff();
    for (int t = 0; t < n_kv; ++t) {
        if (t < first) {  // masked: -inf, then exactly 0 after the exp
            scores[t] = -__builtin_inff();
            continue;
        }
        load_row(row, kv.k, kv.k_type, kv, kv_head, t);
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
        int v = 0;
        for (; v + 2 <= nv; v += 2) {
            a0 = vfmaq_f32(a0, qv[v], vld1q_f32(row + 4 * v));
            a1 = vfmaq_f32(a1, qv[v + 1], vld1q_f32(row + 4 * v + 4));
        }
        if (v < nv) a0 = vfmaq_f32(a0, qv[v], vld1q_f32(row + 4 * v));
        const float s = vaddvq_f32(vaddq_f32(a0, a1)) * scale;
        scores[t] = s;
        max = s > max ? s : max;
    }
    const float inv = softmax_exp(scores, n_kv, max, first);
    float32x4_t o[kMaxHeadDim / 4];
    for (int v = 0; v < nv; ++v) o[v] = vdupq_n_f32(0.0f);
    for (int t = first; t < n_kv; ++t) {
        load_row(row, kv.v, kv.v_type, kv, kv_head, t);
        const float p = scores[t];
        for (int v = 0; v < nv; ++v) o[v] = vfmaq_n_f32(o[v], vld1q_f32(row + 4 * v), p);
    }
    for (int v = 0; v < nv; ++v) vst1q_f32(out + 4 * v, vmulq_n_f32(o[v], inv));
}

}  // namespace

void silu_mul(float* gate, const float* up, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t g = vld1q_f32(gate + i);
        const float32x4_t e = exp4(vnegq_f32(g));
        vst1q_f32(gate + i, vmulq_f32(vdivq_f32(g, vaddq_f32(one, e)), vld1q_f32(up + i)));
    }
    for (; i < n; ++i) gate[i] = gate[i] / (1.0f + exp1(-gate[i])) * up[i];
}

// scores[t] = scale * q.K[t], then p = e^(scores - max), out = (sum_t p[t] V[t]) / sum_t p[t]. Per token the
// dot over head_dim runs in two 4-lane accumulators; V is accumulated in head_dim/4 vectors.
void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores) {
    if (kv.quantized()) return attention_head_quantized(out, q, kv, kv_head, n_kv, scale, scores);
    const int hd = kv.head_dim, bs = kv.block_size, nv = hd / 4;
    const int64_t block_stride = int64_t(kv.n_kv_head) * bs * hd;  // halves per physical block
    const int64_t head_offset = int64_t(kv_head) * bs * hd;
    float32x4_t qv[kMaxHeadDim / 4];
    for (int v = 0; v < nv; ++v) qv[v] = vld1q_f32(q + 4 * v);

    const int first = kv.first_key(n_kv);
    float max = -__builtin_inff();
    for (int t0 = 0; t0 < n_kv; t0 += bs) {
        const half_bits* kb = kv.k16() + kv.block_table[t0 / bs] * block_stride + head_offset;
        const int nt = n_kv - t0 < bs ? n_kv - t0 : bs;
        for (int t = 0; t < nt; ++t) {
            const half_bits* k = kb + int64_t(t) * hd;
            float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
            int v = 0;
            for (; v + 2 <= nv; v += 2) {
                a0 = vfmaq_f32(a0, qv[v], load_half4(k + 4 * v));
                a1 = vfmaq_f32(a1, qv[v + 1], load_half4(k + 4 * v + 4));
            }
            if (v < nv) a0 = vfmaq_f32(a0, qv[v], load_half4(k + 4 * v));
            // keys before a sliding window's first are masked: -inf, then exactly 0 after the exp
            const float s = t0 + t < first ? -__builtin_inff() : vaddvq_f32(vaddq_f32(a0, a1)) * scale;
            scores[t0 + t] = s;
            max = s > max ? s : max;
        }
    }

    const float inv = softmax_exp(scores, n_kv, max, first);

    float32x4_t o[kMaxHeadDim / 4];
    for (int v = 0; v < nv; ++v) o[v] = vdupq_n_f32(0.0f);
    for (int t0 = 0; t0 < n_kv; t0 += bs) {
        const half_bits* vb = kv.v16() + kv.block_table[t0 / bs] * block_stride + head_offset;
        const int nt = n_kv - t0 < bs ? n_kv - t0 : bs;
        for (int tt = 0; tt < nt; ++tt) {
            const float p = scores[t0 + tt];
            const half_bits* vr = vb + int64_t(tt) * hd;
            for (int v = 0; v < nv; ++v) o[v] = vfmaq_n_f32(o[v], load_half4(vr + 4 * v), p);
        }
    }
    for (int v = 0; v < nv; ++v) vst1q_f32(out + 4 * v, vmulq_n_f32(o[v], inv));
}

}  // namespace qrt::neon

#endif  // QRT_HAVE_NEON
