// NEON kernels of the unquantized element types F32, F16 and BF16 (format/floats.h). See neon_util.h for the
// two builds.
//
// Widening is exact, so the dequantizers match the reference bit for bit, NaN payloads included (the
// reference and numpy keep a signalling NaN's payload as is; see fp16x4_to_f32).
#include "format/floats.h"

#include "kernels/dispatch.h"

#if defined(__ARM_NEON)
#include "cpu/neon/neon_util.h"

namespace qrt::neon {
namespace {

// 4 halves -> 4 floats. NaN lanes are rebuilt from their bits (sign, all-ones exponent, payload << 13) as
// the reference does: FCVTL quiets a signalling NaN on hardware (qemu 7.2 does not), so neither result is
// relied on.
float32x4_t fp16x4_to_f32(uint16x4_t h) {
    const uint32x4_t w = vmovl_u16(h);
    const uint16x4_t nan16 = vcgt_u16(vand_u16(h, vdup_n_u16(0x7fff)), vdup_n_u16(0x7c00));
    const uint32x4_t nan = vreinterpretq_u32_s32(vmovl_s16(vreinterpret_s16_u16(nan16)));  // all 32 bits
    const uint32x4_t nan_bits =
        vorrq_u32(vorrq_u32(vshlq_n_u32(vandq_u32(w, vdupq_n_u32(0x8000)), 16), vdupq_n_u32(0x7f800000)),
                  vshlq_n_u32(vandq_u32(w, vdupq_n_u32(0x3ff)), 13));
    const uint32x4_t f = vreinterpretq_u32_f32(vcvt_f32_f16(vreinterpret_f16_u16(h)));
    return vreinterpretq_f32_u32(vbslq_u32(nan, nan_bits, f));
}

void dequantize_row_f16(const void* vx, float* y, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, fp16x4_to_f32(vget_low_u16(h)));
        vst1q_f32(y + i + 4, fp16x4_to_f32(vget_high_u16(h)));
    }
    if (i < n) {  // the last 1..7 halves, through a zero-padded copy
        uint16_t tail[8] = {};
        __builtin_memcpy(tail, x + i, size_t(n - i) * sizeof(uint16_t));
        float out[8];
        vst1q_f32(out, fp16x4_to_f32(vld1_u16(tail)));
        vst1q_f32(out + 4, fp16x4_to_f32(vld1_u16(tail + 4)));
        __builtin_memcpy(y + i, out, size_t(n - i) * sizeof(float));
    }
}

// bfloat16 is the top half of a float: widen with a shift left by 16 (ggml_cpu_bf16_to_fp32).
void dequantize_row_bf16(const void* vx, float* y, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t b = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(b), 16)));
        vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(b, 16)));
    }
    for (; i < n; ++i) {
        const uint32_t u = uint32_t(x[i]) << 16;
        __builtin_memcpy(y + i, &u, sizeof u);
    }
}

// ---- activation quantizers: quantize_row_f16_ref / quantize_row_bf16_ref, bit for bit ----

// FCVTN rounds to nearest even (the default FPCR mode) like fp32_to_fp16: overflow to inf, subnormals
// rounded, NaN quieted with its top payload bits kept.
void quantize_row_f16(const float* x, void* vy, int64_t n) {
    uint16_t* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; ++i) y[i] = float_to_half(x[i]);
}

// ggml_compute_fp32_to_bf16: NaN -> (u >> 16) | 64, else (u + 0x7fff + ((u >> 16) & 1)) >> 16.
uint16x4_t fp32x4_to_bf16(float32x4_t v) {
    const uint32x4_t u = vreinterpretq_u32_f32(v);
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), odd), 16);
    const uint32x4_t quiet = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
    const uint32x4_t is_num = vceqq_f32(v, v);
    return vmovn_u32(vbslq_u32(is_num, rounded, quiet));
}

void quantize_row_bf16(const float* x, void* vy, int64_t n) {
    uint16_t* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, fp32x4_to_bf16(vld1q_f32(x + i)));
    if (i < n) {  // the last 1..3 through a zero-padded copy
        float tail[4] = {};
        __builtin_memcpy(tail, x + i, size_t(n - i) * sizeof(float));
        uint16_t out[4];
        vst1_u16(out, fp32x4_to_bf16(vld1q_f32(tail)));
        __builtin_memcpy(y + i, out, size_t(n - i) * sizeof(uint16_t));
    }
}

// ---- dot products of two rows of the same float type (neon_util.h gemm) ----
//
// Per (row i, token j) two 4-lane accumulators over 8 elements at a time with FMA (F16 and BF16 products are
// exact in float, so only the sums round), the last 1..7 elements through zero-padded copies, then the sum
// of the lanes. The reference accumulates in double, so this differs from it by float rounding of the sums.
float32x4_t load4_f32(const uint8_t* p) {
    return vld1q_f32(reinterpret_cast<const float*>(p));
}
float32x4_t load4_f16(const uint8_t* p) {  // no NaN payload fix-up needed: a product with NaN is NaN anyway
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
}
float32x4_t load4_bf16(const uint8_t* p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
}

template <float32x4_t (*Load4)(const uint8_t*), int kSize>
struct DotFloat {
    static constexpr int64_t kBlock = 1;
    static constexpr int kRM = 4, kRN = 2;

    template <int RM, int RN>
    static void tile(int64_t k, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        float32x4_t acc[RM][RN][2];
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) acc[i][j][0] = acc[i][j][1] = vdupq_n_f32(0.0f);
        auto step = [&](const uint8_t* const(&xs)[RM], const uint8_t* const(&ys)[RN]) {
            float32x4_t xv[RM][2];
            for (int i = 0; i < RM; ++i) xv[i][0] = Load4(xs[i]), xv[i][1] = Load4(xs[i] + 4 * kSize);
            for (int j = 0; j < RN; ++j) {
                const float32x4_t y0 = Load4(ys[j]), y1 = Load4(ys[j] + 4 * kSize);
                for (int i = 0; i < RM; ++i) {
                    acc[i][j][0] = vfmaq_f32(acc[i][j][0], xv[i][0], y0);
                    acc[i][j][1] = vfmaq_f32(acc[i][j][1], xv[i][1], y1);
                }
            }
        };
        int64_t e = 0;
        for (; e + 8 <= k; e += 8) {
            const uint8_t* xs[RM];
            const uint8_t* ys[RN];
            for (int i = 0; i < RM; ++i) xs[i] = a + size_t(i) * lda + size_t(e) * kSize;
            for (int j = 0; j < RN; ++j) ys[j] = b + size_t(j) * ldb + size_t(e) * kSize;
            step(xs, ys);
        }
        if (e < k) {
            alignas(16) uint8_t xt[RM][8 * kSize] = {}, yt[RN][8 * kSize] = {};
            const uint8_t* xs[RM];
            const uint8_t* ys[RN];
            for (int i = 0; i < RM; ++i) {
                __builtin_memcpy(xt[i], a + size_t(i) * lda + size_t(e) * kSize, size_t(k - e) * kSize);
                xs[i] = xt[i];
            }
            for (int j = 0; j < RN; ++j) {
                __builtin_memcpy(yt[j], b + size_t(j) * ldb + size_t(e) * kSize, size_t(k - e) * kSize);
                ys[j] = yt[j];
            }
            step(xs, ys);
        }
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) c[j * ldc + i] = vaddvq_f32(vaddq_f32(acc[i][j][0], acc[i][j][1]));
    }
};

using DotF32 = DotFloat<load4_f32, 4>;
using DotF16 = DotFloat<load4_f16, 2>;
using DotBF16 = DotFloat<load4_bf16, 2>;

const kernels::Registrar f32_registrar(Isa::Neon, TypeId::F32,
                                       for_this_build({.vec_dot = vec_dot<DotF32>, .gemm = gemm<DotF32>}));
const kernels::Registrar f16_registrar(Isa::Neon, TypeId::F16,
                                       for_this_build({.dequantize_row = dequantize_row_f16,
                                                       .quantize_row = quantize_row_f16,
                                                       .vec_dot = vec_dot<DotF16>,
                                                       .gemm = gemm<DotF16>}));
const kernels::Registrar bf16_registrar(Isa::Neon, TypeId::BF16,
                                        for_this_build({.dequantize_row = dequantize_row_bf16,
                                                        .quantize_row = quantize_row_bf16,
                                                        .vec_dot = vec_dot<DotBF16>,
                                                        .gemm = gemm<DotBF16>}));

}  // namespace
}  // namespace qrt::neon

#endif  // __ARM_NEON
