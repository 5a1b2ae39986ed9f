// Packed (row-interleaved) kernel of NF4 for prefill and decode: the layout of cpu/nf4_packed.h (8 rows of a
// 64-element block: 8 float scales, then the 4-bit codes ordered as Q4_0's packed nibbles), and the gemm that
// reads it.
//
// A chunk's 32 bytes hold 4 consecutive elements of each of the 8 rows (lane r = row r); the codes become
// bytes by one vpshufb into a 16-byte table, as llama.cpp's IQ4_NL does with its own, and the token's 4
// matching activation bytes are broadcast to all 8 lanes. The table holds kNF4_I8 + 64 (format/nf4.h: the
// int8 image of the codebook lies in [-64, 63]), unsigned, so the weights are vpmaddubsw's unsigned operand
// as Q4_0's offset nibbles are, and 64 * sum(y) comes off each half's sum: the caller's per-32 activation
// sums (q8_0_block_sums), the int32 sums starting at -64 * sum(y) as Q4_0's VNNI ones do. A product pair is
// at most 2 * 127 * 127 = 32258, within vpmaddubsw's int16, and vpmaddwd widens every chunk to int32 (dot4,
// cpu/quants/packed_build.h); a table of the full int8 range would need the sign trick instead (|w| and
// sign(y, w), two more operations per chunk and token), which measured 0.6x Q4_0's decode. Each half of a
// block has its own int32 sums, since it pairs with one Q8_0 block and its d: acc += (scale_row * d_y) *
// float(isum), one FMA per half and token, the same operations whatever the tile, so prefill and decode
// agree bit for bit.
//
// Two builds, one source (as packed_legacy.cpp): with -mavxvnni and QRT_AVXVNNI_BUILD, dot4 is vpdpbusd.
// The integer sums are exact either way, so both builds give the same bits.
#include "cpu/nf4_packed.h"
#include "format/nf4.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstring>

#include "cpu/quants/avx2_util.h"
#include "cpu/quants/packed_build.h"

namespace qrt::avx2 {
namespace {

// kNF4_I8 + kOffset: the codebook's image as vpmaddubsw's unsigned operand.
constexpr int kOffset = 64;
struct OffsetTable {
    uint8_t v[16];
};
constexpr OffsetTable offset_table() {
    OffsetTable t{};
    for (int c = 0; c < 16; ++c) t.v[c] = uint8_t(kNF4_I8[c] + kOffset);
    return t;
}
constexpr OffsetTable kTable = offset_table();
constexpr bool table_fits() {  // unsigned and at most 127: a product pair stays within int16
    for (int c = 0; c < 16; ++c)
        if (kNF4_I8[c] + kOffset < 0 || kNF4_I8[c] + kOffset > 127) return false;
    return true;
}
static_assert(table_fits(), "kNF4_I8 must lie in [-64, 63]");

// A Q8_0 activation block's d in all 8 lanes.
__m256 act_d8(const block_q8_0& y) {
    uint16_t d;
    std::memcpy(&d, &y.d, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(short(d)));
}

// 8 rows x RN tokens over all nb blocks; sums[j * ss + 2l + h]: token j's sum of Q8_0 block 2l + h.
template <int RN>
void tile_nf4(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, const int32_t* sums, int64_t ss,
              float* c, int64_t ldc) {
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kTable.v)));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t l = 0; l < nb; ++l, g += cpu::kNf4PackBytes) {
        const block_q8_0* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = reinterpret_cast<const block_q8_0*>(b + size_t(j) * ldb) + 2 * l;
        const __m256 dw = _mm256_loadu_ps(reinterpret_cast<const float*>(g + cpu::kNf4PackScalesAt));
        for (int h = 0; h < 2; ++h) {
            __m256i s32[RN];
            for (int j = 0; j < RN; ++j) s32[j] = _mm256_set1_epi32(-kOffset * sums[j * ss + 2 * l + h]);
            for_units<4>([&]<int C>() {
                const __m256i raw = load_256(g + cpu::kNf4PackQsAt + 32 * (4 * h + C));
                const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(raw, m4));
                const __m256i hi =
                    _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
                for (int j = 0; j < RN; ++j) {
                    const int8_t* qs = y[j][h].qs;
                    s32[j] = dot4(dot4(s32[j], lo, bcast4(qs + 4 * C)), hi, bcast4(qs + 16 + 4 * C));
                }
            });
            for (int j = 0; j < RN; ++j)
                acc[j] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dw, act_d8(y[j][h])), _mm256_cvtepi32_ps(s32[j]), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) _mm256_storeu_ps(c + j * ldc, acc[j]);
}

void packed_gemm_nf4(int64_t k, const void* group, const void* vb, size_t ldb, const int32_t* sums,
                     int64_t ss, float* c, int64_t ldc, int64_t n) {
    const uint8_t* g = static_cast<const uint8_t*>(group);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    const int64_t nb = k / QK_NF4;
    for (; n >= 4; n -= 4, b += 4 * ldb, c += 4 * ldc, sums += 4 * ss)
        tile_nf4<4>(nb, g, b, ldb, sums, ss, c, ldc);
    if (n == 3) tile_nf4<3>(nb, g, b, ldb, sums, ss, c, ldc);
    if (n == 2) tile_nf4<2>(nb, g, b, ldb, sums, ss, c, ldc);
    if (n == 1) tile_nf4<1>(nb, g, b, ldb, sums, ss, c, ldc);
}

constexpr kernels::CpuKernels kNF4Kernels = {.pack_tensor = cpu::pack_nf4,
                                             .packed_gemm = packed_gemm_nf4,
                                             .pack_block_bytes = cpu::kNf4PackBytes,
                                             .pack_needs_sums = true};

const kernels::Registrar nf4_registrar(Isa::Avx2, TypeId::NF4, kNF4Kernels, this_build_slots());

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
