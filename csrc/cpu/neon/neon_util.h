// Helpers shared by the NEON kernel files (csrc/cpu/neon/*.cpp), the gemm driver they all use, and the rule
// that picks between their two builds.
//
// Include it only inside a file's `#if defined(__ARM_NEON)` section: everything here sits in an anonymous
// namespace (internal linkage), so each translation unit has its own copies and the linker can never hand a
// copy compiled for one build to the other (the rule in kernels/dispatch.h).
//
// Two builds, one source. Every file here is compiled twice (CMakeLists.txt): for baseline armv8-a, which
// every AArch64 CPU runs, and for armv8.2-a+dotprod, whose SDOT (vdotq_s32) sums four int8 products per
// int32 lane in one instruction. The only code that differs is dot16() below; the rest is written once.
// Registration (for_this_build) keeps the two apart: the dequantizers and quantizers come from the baseline
// build only, and the dot products (vec_dot, gemm) from the build that matches cpu_features().dotprod, so
// the two builds fill disjoint slots of Isa::Neon's table and the order of static initialization does not
// matter. Testing both paths takes two CPUs (qemu-aarch64 -cpu max and -cpu cortex-a57, .ci/run). We chose
// this over one file with `#pragma GCC target("+dotprod")` sections because arm_neon.h's always_inline
// intrinsics and our templates cannot be inlined across target boundaries.
//
// Dot products. A block's quants are unpacked into signed int8 lanes holding the actual values (Q4_0: q-8,
// Q6_K: q-32, ...; signed x signed is native on NEON, so no offset correction), dotted with the activation's
// int8 lanes into int32 lanes, and reduced to the exact integer sum of the reference. The float part then
// repeats the reference's operations in its order (dx*dy*sumi, d*sumi - dmin*summ, ...) and adds the blocks
// up in block order, so vec_dot equals the scalar reference bit for bit, which dispatch.h allows but does
// not require. Every output of gemm is computed by the same code whatever the tile, so gemm equals vec_dot.
#pragma once

#if defined(__ARM_NEON)
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "cpu/isa.h"
#include "kernels/dispatch.h"

namespace qrt::neon {
namespace {

#if defined(__ARM_FEATURE_DOTPROD)
constexpr bool kDotprodBuild = true;

// acc + the sums of each 4 adjacent products of a and b (SDOT).
inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    return vdotq_s32(acc, a, b);
}
#else
constexpr bool kDotprodBuild = false;

// acc + the 16 products of a and b, summed into 4 int32 lanes: 8-bit x 8-bit products fit int16 (|p| <=
// 128*128), pairs are added into int32 lanes (SMULL + SADALP). The lanes group the products differently from
// SDOT; callers only ever use the sum of all four lanes.
inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}
#endif

// The exact integer dot of 32 int8 lanes (a0:a1 . b0:b1).
inline int32_t dot32(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
    return vaddvq_s32(dot16(dot16(vdupq_n_s32(0), a0, b0), a1, b1));
}

// binary16 -> float (one scalar FCVT): exact for every finite value and infinity; a NaN comes out quiet
// (only block scales use this, and a NaN scale gives NaN either way).
inline float half_to_float(uint16_t bits) {
    __fp16 h;
    __builtin_memcpy(&h, &bits, sizeof h);
    return float(h);
}

// float -> binary16 rounding to nearest even (FCVT in the default FPCR mode): fp32_to_fp16 bit for bit,
// overflow to infinity and NaN (quiet, top payload bits kept) included.
inline uint16_t float_to_half(float f) {
    const __fp16 h = f;
    uint16_t bits;
    __builtin_memcpy(&bits, &h, sizeof bits);
    return bits;
}

// The four float32x4 of 16 int8 lanes, in lane order.
inline void i8x16_to_f32(int8x16_t q, float32x4_t f[4]) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    f[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    f[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

// y[0..15] = d * q (one multiply per element, as the reference's `d * q` / `q * d`).
inline void store_mul_16(int8x16_t q, float d, float* y) {
    float32x4_t f[4];
    i8x16_to_f32(q, f);
    for (int k = 0; k < 4; ++k) vst1q_f32(y + 4 * k, vmulq_n_f32(f[k], d));
}

// y[0..15] = d * q + m (a multiply, then an add: the build's -ffp-contract=off keeps them apart).
inline void store_mul_add_16(int8x16_t q, float d, float m, float* y) {
    float32x4_t f[4];
    i8x16_to_f32(q, f);
    for (int k = 0; k < 4; ++k) vst1q_f32(y + 4 * k, vaddq_f32(vmulq_n_f32(f[k], d), vdupq_n_f32(m)));
}

// y[0..15] = d * q - m
inline void store_mul_sub_16(int8x16_t q, float d, float m, float* y) {
    float32x4_t f[4];
    i8x16_to_f32(q, f);
    for (int k = 0; k < 4; ++k) vst1q_f32(y + 4 * k, vsubq_f32(vmulq_n_f32(f[k], d), vdupq_n_f32(m)));
}

// Which of a file's kernels this build registers (see the top of this file).
inline kernels::CpuKernels for_this_build(kernels::CpuKernels k) {
    if (kDotprodBuild) k.dequantize_row = nullptr, k.quantize_row = nullptr;
    if (cpu_features().dotprod != kDotprodBuild) k.vec_dot = nullptr, k.gemm = nullptr;
    return k;
}

// ---- the gemm driver ----
//
// K::tile<RM, RN>(nb, a, lda, b, ldb, c, ldc) computes c[j*ldc + i] for i < RM, j < RN over nb blocks of
// K::kBlock elements; K::kRM, K::kRN is its main tile. Smaller tiles cover the edges. A tile unpacks each
// weight block once for its RN tokens and loads each activation block once for its RM rows (llamafile's
// tinyBLAS); NEON's 32 vector registers hold a 4 x 2 tile's working set.

template <class K, int RM, int RN>
inline void tile_at_most(int rm, int rn, int64_t nb, const uint8_t* a, size_t lda, const uint8_t* b,
                         size_t ldb, float* c, int64_t ldc) {
    if constexpr (RM > 1) {
        if (rm < RM) return tile_at_most<K, RM - 1, RN>(rm, rn, nb, a, lda, b, ldb, c, ldc);
    }
    if constexpr (RN > 1) {
        if (rn < RN) return tile_at_most<K, RM, RN - 1>(rm, rn, nb, a, lda, b, ldb, c, ldc);
    }
    K::template tile<RM, RN>(nb, a, lda, b, ldb, c, ldc);
}

template <class K>
void gemm(int64_t k, const void* va, size_t lda, const void* vb, size_t ldb, float* c, int64_t ldc, int64_t m,
          int64_t n) {
    const uint8_t* a = static_cast<const uint8_t*>(va);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    const int64_t nb = k / K::kBlock;
    for (int64_t i = 0; i < m; i += K::kRM) {
        const int rm = int(m - i < K::kRM ? m - i : K::kRM);
        for (int64_t j = 0; j < n; j += K::kRN) {
            const int rn = int(n - j < K::kRN ? n - j : K::kRN);
            tile_at_most<K, K::kRM, K::kRN>(rm, rn, nb, a + size_t(i) * lda, lda, b + size_t(j) * ldb, ldb,
                                            c + j * ldc + i, ldc);
        }
    }
}

template <class K>
float vec_dot(int64_t k, const void* x, const void* y) {
    float out;
    K::template tile<1, 1>(k / K::kBlock, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y),
                           0, &out, 1);
    return out;
}

template <typename X>
const X& block_at(const uint8_t* rows, size_t stride, int i, int64_t l) {
    return reinterpret_cast<const X*>(rows + size_t(i) * stride)[l];
}

// ---- blocks whose unpacked quants fit in registers (the 32-element legacy types) ----
//
// K provides X (weight block), Y (activation block), kRM, kRN, a per-block unpacked state Row, unpack(x, row)
// and dot(row, y): that block's term, computed as the reference computes it. tile() adds the terms up in
// block order.
template <class K>
struct BlockDot {
    static constexpr int64_t kBlock = 32;
    static constexpr int kRM = K::kRM, kRN = K::kRN;

    template <int RM, int RN>
    static void tile(int64_t nb, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        float acc[RM][RN] = {};
        for (int64_t l = 0; l < nb; ++l) {
            typename K::Row row[RM];
            for (int i = 0; i < RM; ++i) K::unpack(block_at<typename K::X>(a, lda, i, l), row[i]);
            for (int j = 0; j < RN; ++j) {
                const typename K::Y& y = block_at<typename K::Y>(b, ldb, j, l);
                for (int i = 0; i < RM; ++i) acc[i][j] += K::dot(row[i], y);
            }
        }
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) c[j * ldc + i] = acc[i][j];
    }
};

}  // namespace
}  // namespace qrt::neon

#endif  // __ARM_NEON
