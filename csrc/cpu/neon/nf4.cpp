// NEON packed kernel of NF4 for prefill and decode, over the layout of cpu/nf4_packed.h (8 rows of a
// 64-element block: 8 float scales, then the 4-bit codes, 4 consecutive elements of each row side by side),
// the same layout and pack as the AVX2 kernel (cpu/quants/packed_nf4.cpp).
//
// One 16-byte half of a chunk holds 4 elements of each of 4 rows; the codes become int8 by one vqtbl1q into
// the codebook's int8 image (kNF4_I8, format/nf4.h), and the token's 4 matching activation bytes, broadcast
// to the 4 lanes, are dotted with them into one int32 lane per row (dot4x4): SDOT in the dotprod build, in
// the baseline build SMULL, a pairwise add of the products (each pair at most 2 * 127 * 127, within int16)
// and SADALP. The integer sums are exact either way, so both builds give the same bits. Each half of a block
// pairs with one Q8_0 activation block: acc += (scale_row * d_y) * float(isum), one FMA per half, rows 0..3
// and 4..7, and token, the same operations whatever the tile, so prefill and decode agree bit for bit.
// Registration (neon_util.h's two builds): the layout from the baseline build, packed_gemm from the build
// that matches cpu_features().dotprod.
#include "format/nf4.h"

#include "cpu/nf4_packed.h"
#include "kernels/dispatch.h"

#if defined(__ARM_NEON)
#include "cpu/neon/neon_util.h"

namespace qrt::neon {
namespace {

#if defined(__ARM_FEATURE_DOTPROD)
// acc + per int32 lane q, the sum of the 4 products of bytes 4q..4q+3 of a and b.
inline int32x4_t dot4x4(int32x4_t acc, int8x16_t a, int8x16_t b) {
    return vdotq_s32(acc, a, b);
}
#else
inline int32x4_t dot4x4(int32x4_t acc, int8x16_t a, int8x16_t b) {
    return vpadalq_s16(acc, vpaddq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vmull_high_s8(a, b)));
}
#endif

// The 4 bytes at p in every 32-bit lane.
inline int8x16_t bcast4(const int8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

// 8 rows x RN tokens over all nb blocks.
template <int RN>
void tile_nf4(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    float32x4_t acc[RN][2];
    for (int j = 0; j < RN; ++j) acc[j][0] = acc[j][1] = vdupq_n_f32(0.0f);
    const int8x16_t table = vld1q_s8(kNF4_I8);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int64_t l = 0; l < nb; ++l, g += cpu::kNf4PackBytes) {
        const block_q8_0* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = reinterpret_cast<const block_q8_0*>(b + size_t(j) * ldb) + 2 * l;
        const float* scale = reinterpret_cast<const float*>(g + cpu::kNf4PackScalesAt);
        const float32x4_t d0 = vld1q_f32(scale), d1 = vld1q_f32(scale + 4);
        for (int h = 0; h < 2; ++h) {
            int32x4_t s[RN][2];
            for (int j = 0; j < RN; ++j) s[j][0] = s[j][1] = vdupq_n_s32(0);
            for (int c4 = 0; c4 < 4; ++c4) {
                const uint8_t* q = g + cpu::kNf4PackQsAt + 32 * (4 * h + c4);
                const uint8x16_t r0 = vld1q_u8(q), r1 = vld1q_u8(q + 16);  // rows 0..3, rows 4..7
                const int8x16_t lo0 = vqtbl1q_s8(table, vandq_u8(r0, m4)),
                                hi0 = vqtbl1q_s8(table, vshrq_n_u8(r0, 4));
                const int8x16_t lo1 = vqtbl1q_s8(table, vandq_u8(r1, m4)),
                                hi1 = vqtbl1q_s8(table, vshrq_n_u8(r1, 4));
                for (int j = 0; j < RN; ++j) {
                    const int8x16_t alo = bcast4(y[j][h].qs + 4 * c4), ahi = bcast4(y[j][h].qs + 16 + 4 * c4);
                    s[j][0] = dot4x4(dot4x4(s[j][0], lo0, alo), hi0, ahi);
                    s[j][1] = dot4x4(dot4x4(s[j][1], lo1, alo), hi1, ahi);
                }
            }
            for (int j = 0; j < RN; ++j) {
                const float dy = half_to_float(y[j][h].d);
                acc[j][0] = vfmaq_f32(acc[j][0], vmulq_n_f32(d0, dy), vcvtq_f32_s32(s[j][0]));
                acc[j][1] = vfmaq_f32(acc[j][1], vmulq_n_f32(d1, dy), vcvtq_f32_s32(s[j][1]));
            }
        }
    }
    for (int j = 0; j < RN; ++j) {
        vst1q_f32(c + j * ldc, acc[j][0]);
        vst1q_f32(c + j * ldc + 4, acc[j][1]);
    }
}

void packed_gemm_nf4(int64_t k, const void* group, const void* vb, size_t ldb, const int32_t*, int64_t,
                     float* c, int64_t ldc, int64_t n) {
    const uint8_t* g = static_cast<const uint8_t*>(group);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    const int64_t nb = k / QK_NF4;
    for (; n >= 4; n -= 4, b += 4 * ldb, c += 4 * ldc) tile_nf4<4>(nb, g, b, ldb, c, ldc);
    if (n == 3) tile_nf4<3>(nb, g, b, ldb, c, ldc);
    if (n == 2) tile_nf4<2>(nb, g, b, ldb, c, ldc);
    if (n == 1) tile_nf4<1>(nb, g, b, ldb, c, ldc);
}

unsigned this_build_slots() {
    unsigned slots = kernels::kAllSlots;
    if (kDotprodBuild) slots &= ~unsigned(kernels::kLayoutSlot);
    if (cpu_features().dotprod != kDotprodBuild) slots &= ~unsigned(kernels::kPackedGemmSlot);
    return slots;
}

constexpr kernels::CpuKernels kNF4Kernels = {
    .pack_tensor = cpu::pack_nf4, .packed_gemm = packed_gemm_nf4, .pack_block_bytes = cpu::kNf4PackBytes};

const kernels::Registrar nf4_registrar(Isa::Neon, TypeId::NF4, kNF4Kernels, this_build_slots());

}  // namespace
}  // namespace qrt::neon

#endif  // __ARM_NEON
