// Packed (row-interleaved) kernels of the 32-element legacy types Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: the
// layout weights are repacked into at load (kernels/dispatch.h: kPackRows rows per group), and the gemm
// that reads it for prefill and decode alike.
//
// Layout of one packed block (block l of the 8 rows r = 0..7 of a group; the group is nb such blocks):
//   d[8]  fp16 scales, row r at r                                      16 bytes
//   m[8]  fp16 mins (Q4_1, Q5_1)                                       16 bytes
//   qh    fifth bits (Q5_0, Q5_1): byte 4r+i, bit c = element 4c+i's,  32 bytes
//         bit 4+c = element 16+4c+i's (c = 0..3)
//   qs    chunks of 32 bytes, byte 4r+i of chunk c = row r's qs[4c+i]: 4 x 32 bytes for the nibble types
//         (low nibbles: elements 4c..4c+3, high nibbles: 16+4c..), 8 x 32 bytes for Q8_0 (elements 4c..)
// That is the same number of bytes as the 8 blocks it comes from.
//
// One 32-byte chunk holds 4 consecutive elements of each of the 8 rows (lane r = row r), so the token's 4
// matching activation bytes are broadcast and one vpmaddubsw multiplies them into all 8 rows at once; the
// 8 lanes of the result are 8 outputs, which need no horizontal sum, and one int->float conversion and one
// FMA with the 8 rows' scales serve 8 outputs (llama.cpp's block_q4_0x8 repack has the same idea).
// Integer sums per block are exact: unsigned 4-bit quants times int8 stay within int16 for 8 vpmaddubsw
// (15*127*2*8 = 30480), 5-bit quants for 4 (31*127*2*4 = 31496); the offset types' o * sum(y) comes from the
// caller's per-block activation sums (q8_0_block_sums), once per token and block for all 8 rows. Q8_0 is
// signed x signed: |x| times y with x's sign, then vpmaddwd per chunk (127*127*2 fills int16 on its own).
// Per block and token: acc += (d_row * d_y) * float(isum) [+ m_row * s_y], one FMA (two with mins); the
// same operations for every token, whatever the tile, so prefill and decode agree bit for bit.
//
// Two builds, one source (as csrc/cpu/neon/neon_util.h): this file is compiled once with the other AVX2
// files and again with -mavxvnni and QRT_AVXVNNI_BUILD (CMakeLists.txt), where AVX-VNNI's vpdpbusd (u8 x i8,
// four adjacent products summed into each int32 lane and added to it) takes the place of vpmaddubsw +
// vpmaddwd and the nibble types' int16 stage. Only the dot (dot4, and the one `if constexpr` in
// tile_nibbles) differs. The integer sums are exact either way, so both builds give the same bits.
// What differs between the builds, and which slots each registers, is in cpu/quants/packed_build.h.
#include "format/legacy.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstring>

#include "cpu/quants/avx2_util.h"
#include "cpu/quants/packed_build.h"

namespace qrt::avx2 {
namespace {

constexpr int R = kernels::kPackRows;

// Per type: the source block, its activation partner, and which parts of the layout it has.
template <typename X, typename Y, int kOff, bool kMinV, bool kHighV, int kRNV>
struct Nibbles {
    using Block = X;
    using Act = Y;
    static constexpr int kOffset = kOff;  // stored quant = value + kOffset (Q4_0: 8, Q5_0: 16)
    static constexpr bool kMin = kMinV, kHigh = kHighV;
    static constexpr int kRN = kRNV;  // tokens per tile: what the 16 ymm registers hold
    static constexpr size_t kMinAt = 16, kHighAt = 16 + (kMin ? 16 : 0), kQsAt = kHighAt + (kHigh ? 32 : 0);
    static constexpr size_t kBytes = kQsAt + 128;
};

using PQ4_0 = Nibbles<block_q4_0, block_q8_0, 8, false, false, 4>;
using PQ4_1 = Nibbles<block_q4_1, block_q8_1, 0, true, false, 4>;
// The 5-bit types' plain tiles keep int16 and int32 sums per token, so 3 tokens fit; with VNNI only int32.
constexpr int kRN5 = kVnniBuild ? 4 : 3;
using PQ5_0 = Nibbles<block_q5_0, block_q8_0, 16, false, true, kRN5>;
using PQ5_1 = Nibbles<block_q5_1, block_q8_1, 0, true, true, kRN5>;
static_assert(PQ4_0::kBytes == R * sizeof(block_q4_0) && PQ4_1::kBytes == R * sizeof(block_q4_1) &&
              PQ5_0::kBytes == R * sizeof(block_q5_0) && PQ5_1::kBytes == R * sizeof(block_q5_1));

constexpr size_t kQ8Bytes = 16 + 256;
static_assert(kQ8Bytes == R * sizeof(block_q8_0));

template <typename X>
const X& src_block(const void* rows, size_t lda, int r, int64_t l) {
    return reinterpret_cast<const X*>(static_cast<const uint8_t*>(rows) + size_t(r) * lda)[l];
}

// Swaps the bits of x selected by mask with those delta places above them.
inline uint32_t delta_swap(uint32_t x, uint32_t mask, int delta) {
    const uint32_t t = ((x >> delta) ^ x) & mask;
    return x ^ t ^ (t << delta);
}

// The qh bytes of the layout: bit j of byte i = bit 4j + i of the block's qh (j = c and 4 + c above), that
// is bit 8i + j = bit 4j + i. Moving bit b to the position whose 5-bit index is b's rotated left by 3 takes
// four swaps of two index bits each (4 with 1, 3 with 0, 2 with 1, 1 with 0), where bit by bit it took 32
// extractions.
inline uint32_t transpose_qh(uint32_t x) {
    x = delta_swap(x, 0x0000CCCCu, 14);
    x = delta_swap(x, 0x00AA00AAu, 7);
    x = delta_swap(x, 0x0C0C0C0Cu, 2);
    return delta_swap(x, 0x22222222u, 1);
}

template <class P>
void pack_nibbles(int64_t k, const void* rows, size_t lda, void* vgroup) {
    using X = typename P::Block;
    uint8_t* out = static_cast<uint8_t*>(vgroup);
    for (int64_t l = 0; l < k / 32; ++l, out += P::kBytes) {
        for (int r = 0; r < R; ++r) {
            const X& x = src_block<X>(rows, lda, r, l);
            std::memcpy(out + 2 * r, &x.d, 2);
            if constexpr (P::kMin) std::memcpy(out + P::kMinAt + 2 * r, &x.m, 2);
            if constexpr (P::kHigh) {
                uint32_t qh;
                std::memcpy(&qh, x.qh, 4);
                const uint32_t b = transpose_qh(qh);
                std::memcpy(out + P::kHighAt + 4 * r, &b, 4);
            }
            for (int c = 0; c < 4; ++c) std::memcpy(out + P::kQsAt + 32 * c + 4 * r, x.qs + 4 * c, 4);
        }
    }
}

void pack_q8_0(int64_t k, const void* rows, size_t lda, void* vgroup) {
    uint8_t* out = static_cast<uint8_t*>(vgroup);
    for (int64_t l = 0; l < k / 32; ++l, out += kQ8Bytes) {
        for (int r = 0; r < R; ++r) {
            const block_q8_0& x = src_block<block_q8_0>(rows, lda, r, l);
            std::memcpy(out + 2 * r, &x.d, 2);
            for (int c = 0; c < 8; ++c) std::memcpy(out + 16 + 32 * c + 4 * r, x.qs + 4 * c, 4);
        }
    }
}

// A Q8_0 activation block's d in all 8 lanes: the fp16 broadcast, then converted (two operations; a scalar
// conversion and a float broadcast take three).
__m256 act_d8(const block_q8_0& y) {
    uint16_t d;
    std::memcpy(&d, &y.d, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(short(d)));
}

// The activation block's d (and s, for Q8_1) as floats.
template <typename Y>
void act_scales(const Y& y, float* d, float* s) {
    if constexpr (requires { y.s; }) {
        uint32_t w;
        std::memcpy(&w, &y, 4);
        const __m128 ds = _mm_cvtph_ps(_mm_cvtsi32_si128(int(w)));
        *d = _mm_cvtss_f32(ds);
        *s = _mm_cvtss_f32(_mm_movehdup_ps(ds));
    } else {
        *d = _cvtsh_ss(y.d);
        *s = 0.0f;
    }
}

// 8 rows x RN tokens over all nb blocks.
template <class P, int RN>
void tile_nibbles(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, const int32_t* sums, int64_t ss,
                  float* c, int64_t ldc) {
    using Y = typename P::Act;
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int64_t l = 0; l < nb; ++l, g += P::kBytes) {
        const Y* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = reinterpret_cast<const Y*>(b + size_t(j) * ldb) + l;
        // 4-bit: int16 over the whole block; 5-bit: int16 over two chunks, then int32
        // Where the sums are int32 from the start (VNNI, 5-bit), they start at -offset * sum(y) instead of
        // having it subtracted at the end: the same integer, one operation fewer per block and token.
        constexpr bool kOffsetFirst = P::kOffset != 0 && (kVnniBuild || P::kHigh);
        __m256i s16[RN], s32[RN];
        for (int j = 0; j < RN; ++j) {
            s16[j] = _mm256_setzero_si256();
            s32[j] =
                kOffsetFirst ? _mm256_set1_epi32(-P::kOffset * sums[j * ss + l]) : _mm256_setzero_si256();
        }
        [[maybe_unused]] __m256i qh;
        if constexpr (P::kHigh) qh = load_256(g + P::kHighAt);
        for_units<4>([&]<int C>() {
            const __m256i raw = load_256(g + P::kQsAt + 32 * C);
            __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if constexpr (P::kHigh) {  // bit C -> bit 4 (lo), bit 4+C -> bit 4 (hi); no bit leaves its byte
                lo = _mm256_or_si256(
                    lo, _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(1 << C)), 4 - C));
                hi = _mm256_or_si256(
                    hi, _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(char(16 << C))), C));
            }
            for (int j = 0; j < RN; ++j) {
                const __m256i alo = bcast4(y[j]->qs + 4 * C), ahi = bcast4(y[j]->qs + 16 + 4 * C);
                if constexpr (kVnniBuild) {  // straight into int32: no int16 stage, no vpmaddwd
                    s32[j] = dot4(dot4(s32[j], lo, alo), hi, ahi);
                } else {
                    const __m256i t =
                        _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
                    s16[j] = _mm256_add_epi16(s16[j], t);
                    if constexpr (P::kHigh && C % 2 == 1) {
                        s32[j] = _mm256_add_epi32(s32[j], _mm256_madd_epi16(s16[j], ones));
                        s16[j] = _mm256_setzero_si256();
                    }
                }
            }
        });
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        [[maybe_unused]] __m256 mw;
        if constexpr (P::kMin)
            mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        for (int j = 0; j < RN; ++j) {
            __m256i isum = kVnniBuild || P::kHigh ? s32[j] : _mm256_madd_epi16(s16[j], ones);
            if constexpr (P::kOffset != 0 && !kOffsetFirst)
                isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(P::kOffset * sums[j * ss + l]));
            if constexpr (P::kMin) {
                float dy, sy;
                act_scales(*y[j], &dy, &sy);
                acc[j] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(isum), acc[j]);
                acc[j] = _mm256_fmadd_ps(mw, _mm256_set1_ps(sy), acc[j]);
            } else {
                acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, act_d8(*y[j])), _mm256_cvtepi32_ps(isum), acc[j]);
            }
        }
    }
    for (int j = 0; j < RN; ++j) _mm256_storeu_ps(c + j * ldc, acc[j]);
}

template <int RN>
void tile_q8_0(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t l = 0; l < nb; ++l, g += kQ8Bytes) {
        const block_q8_0* y[RN];
        __m256i s32[RN];
        for (int j = 0; j < RN; ++j) {
            y[j] = reinterpret_cast<const block_q8_0*>(b + size_t(j) * ldb) + l;
            s32[j] = _mm256_setzero_si256();
        }
        for (int ch = 0; ch < 8; ++ch) {
            const __m256i w = load_256(g + 16 + 32 * ch);
            const __m256i aw = _mm256_sign_epi8(w, w);
            for (int j = 0; j < RN; ++j)
                s32[j] = dot4(s32[j], aw, _mm256_sign_epi8(bcast4(y[j]->qs + 4 * ch), w));
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        for (int j = 0; j < RN; ++j)
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, act_d8(*y[j])), _mm256_cvtepi32_ps(s32[j]), acc[j]);
    }
    for (int j = 0; j < RN; ++j) _mm256_storeu_ps(c + j * ldc, acc[j]);
}

// The token tiles: kRN at a time, then the rest with a smaller tile (same operations per token).
template <int RN, class Tile>
void over_tokens(int64_t n, size_t ldb, int64_t ldc, int64_t ss, const uint8_t*& b, float*& c,
                 const int32_t*& sums, Tile&& tile) {
    for (; n >= RN; n -= RN) {
        tile.template operator()<RN>(b, sums, c);
        b += RN * ldb;
        c += RN * ldc;
        if (sums) sums += RN * ss;
    }
    if constexpr (RN > 1)
        if (n > 0) over_tokens<RN - 1>(n, ldb, ldc, ss, b, c, sums, tile);
}

template <class P>
void packed_gemm_nibbles(int64_t k, const void* group, const void* vb, size_t ldb, const int32_t* sums,
                         int64_t ss, float* c, int64_t ldc, int64_t n) {
    const uint8_t* g = static_cast<const uint8_t*>(group);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    over_tokens<P::kRN>(n, ldb, ldc, ss, b, c, sums,
                        [&]<int RN>(const uint8_t* bj, const int32_t* sj, float* cj) {
                            tile_nibbles<P, RN>(k / 32, g, bj, ldb, sj, ss, cj, ldc);
                        });
}

void packed_gemm_q8_0(int64_t k, const void* group, const void* vb, size_t ldb, const int32_t* sums,
                      int64_t ss, float* c, int64_t ldc, int64_t n) {
    const uint8_t* g = static_cast<const uint8_t*>(group);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    over_tokens<4>(n, ldb, ldc, ss, b, c, sums, [&]<int RN>(const uint8_t* bj, const int32_t*, float* cj) {
        tile_q8_0<RN>(k / 32, g, bj, ldb, cj, ldc);
    });
}

template <class P>
constexpr kernels::CpuKernels nibble_kernels() {
    return {.pack = pack_nibbles<P>,
            .packed_gemm = packed_gemm_nibbles<P>,
            .pack_block_bytes = P::kBytes,
            .pack_needs_sums = P::kOffset != 0};
}

constexpr kernels::CpuKernels kQ4_0 = nibble_kernels<PQ4_0>(), kQ4_1 = nibble_kernels<PQ4_1>(),
                              kQ5_0 = nibble_kernels<PQ5_0>(), kQ5_1 = nibble_kernels<PQ5_1>();
constexpr kernels::CpuKernels kQ8_0 = {
    .pack = pack_q8_0, .packed_gemm = packed_gemm_q8_0, .pack_block_bytes = kQ8Bytes};

const kernels::Registrar q4_0_registrar(Isa::Avx2, TypeId::Q4_0, kQ4_0, this_build_slots());
const kernels::Registrar q4_1_registrar(Isa::Avx2, TypeId::Q4_1, kQ4_1, this_build_slots());
const kernels::Registrar q5_0_registrar(Isa::Avx2, TypeId::Q5_0, kQ5_0, this_build_slots());
const kernels::Registrar q5_1_registrar(Isa::Avx2, TypeId::Q5_1, kQ5_1, this_build_slots());
const kernels::Registrar q8_0_registrar(Isa::Avx2, TypeId::Q8_0, kQ8_0, this_build_slots());

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
