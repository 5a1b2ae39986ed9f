// Packed (row-interleaved) AVX2 kernels of Q2_K, Q3_K, Q4_K, Q5_K and Q6_K against Q8_K tokens
// (kernels/dispatch.h PackFn, PackedGemmFn): kPackRows = 8 rows become one group, repacked once at load.
//
// The idea (llama.cpp ggml-cpu/repack.cpp, block_q4_Kx8 / ggml_gemm_q4_K_8x8_q8_K; our layout differs): a
// 256-bit register holds 4 consecutive elements ("a quad") of each of the 8 rows, 32-bit lane r = row r.
// The token's 4 matching int8 quants are broadcast to all lanes (one vpbroadcastd load), and one vpmaddubsw
// gives every row two int16 pair sums. These add up in int16 over the quads of a sub-block while they cannot
// overflow, then one vpmaddwd with the rows' sub-block scales (each row's scale in both int16 halves of its
// lane) gives one int32 per row. At the end of a super-block one int->float conversion and one FMA with
// d_row * d_token serve all 8 rows, and the 8 results of a token are one 8-float store: no horizontal sums.
// The weight register of a quad is unpacked once and used for every token of the tile (up to kRN).
//
// Scales and mins are unpacked to one byte per (row, sub-block) at pack time, so the hot loop does no 6-bit
// unpacking; they are widened by one vpshufb per sub-block, shared by the tokens. d (and dmin) stay fp16,
// 8 rows converted by one vcvtph2ps.
//
// Per token the float operations are the same whatever the tile (n), so outputs do not depend on batching;
// the integer sums are exactly the reference's (format/kquants.h vec_dot_block_*_q8_K).
//
// Two builds, one source (as packed_legacy.cpp; cpu/quants/packed_build.h says how they register): compiled
// again with -mavxvnni and QRT_AVXVNNI_BUILD, where the quads of a sub-block go straight into one int32 per
// row and token with vpdpbusd (no int16 stage), then the rows' sub-block scales apply: by one vpdpwssd where
// that sum fits int16 (Q2_K, Q3_K, each half of a Q4_K sub-block; scale_add16 says how), else by vpmulld +
// vpaddd (Q5_K, Q6_K). The min and offset terms take vpdpwssd too (vpmaddwd + vpaddd in one). The integer
// sums are exact either way, so both builds give the same bits. Everything else (layout, unpacking, float
// steps) is shared; the plain build's instructions are as before.
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"
#include "cpu/quants/packed_build.h"

namespace qrt::avx2 {
namespace {

constexpr int R = kernels::kPackRows;
static_assert(R == 8, "one 32-bit lane per row of a 256-bit register");

// The Q8_K token block (format/kquants.h block_q8_K): d at 0, qs at 4, bsums at 260.
constexpr size_t kYQs = offsetof(block_q8_K, qs), kYBsums = offsetof(block_q8_K, bsums);

inline __m256i load_128x2(const uint8_t* p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The scale bytes of a pair of sub-blocks are stored as byte 2r + e = scale of row r, sub-block 2p + e.
// This vpshufb control (applied to those 16 bytes in both 128-bit halves) puts row r's byte into both int16
// halves of 32-bit lane r: at the low byte of each half (zero-extended: Q4_K's unsigned scales) or at the
// high byte (then an arithmetic shift right by 8 sign-extends: Q6_K's int8 scales).
inline __m256i scale_dup_ctrl(int e, bool high) {
    alignas(32) int8_t c[32];
    for (int i = 0; i < 32; ++i) {
        const int r = i / 4;  // lane i/4 is row r: the high 128-bit half holds rows 4..7
        const bool data = (i % 2 == 1) == high;
        c[i] = data ? int8_t(2 * r + e) : int8_t(-128);
    }
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
}

// The same for one scale per row (the VNNI build): row r's byte at byte `at` of lane r, the others zero. At
// 0: zero-extended, one int32 (vpmulld) or the low int16 with a zero high one (vpdpwssd). At 1 or 3 for
// signed scales: then an arithmetic shift right by 8 (int16) or 24 (int32) sign-extends.
inline __m256i scale_lane_ctrl(int e, int at) {
    alignas(32) int8_t c[32];
    for (int i = 0; i < 32; ++i) c[i] = i % 4 == at ? int8_t(2 * (i / 4) + e) : int8_t(-128);
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
}

// An empty asm that "changes" x: the compiler must finish x here. Without it GCC 12 reassociates the
// unrolled integer sums of all the tokens of a tile into one tree, computes every vpmaddubsw first and
// spills them (Q4_K, 4 tokens, L2: 84 GMAC/s -> 101 with it; Q6_K, whose int16 chains are short, is faster
// without).
inline void keep_in_order(__m256i& x) {
    __asm__("" : "+x"(x));
}

// One quad: the weights w times each token's 4 matching quants (at y[j] + off), added to the token's int16
// chain s16[j] (or starting it). A function rather than a lambda: GCC 12 kept a lambda's captured arrays
// (the chains, the int32 sums) in memory (Q5_K L2 n = 1: 36 GMAC/s -> 56).
template <int RN>
inline __attribute__((always_inline)) void quad_dot(__m256i w, const uint8_t* const* y, size_t off,
                                                    __m256i* s16, bool first) {
    for (int j = 0; j < RN; ++j) {
        const __m256i p = _mm256_maddubs_epi16(w, bcast4(y[j] + off));
        s16[j] = first ? p : _mm256_add_epi16(s16[j], p);
        keep_in_order(s16[j]);
    }
}

// sumi[j] -= (sc << kShift) . the token's bsums of sub-blocks 2p, 2p + 1, per int32 lane: the offset term of
// the signed-quant types (Q3_K: 4 sc, Q6_K: 32 sc), sc the 16 int8 scales at sp (row r's pair at 2r).
template <int RN, int kShift>
inline __attribute__((always_inline)) void sub_scaled_bsums(__m256i* sumi, const uint8_t* sp,
                                                            const uint8_t* const* y, int p) {
    const __m256i sc = _mm256_slli_epi16(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sp))), kShift);
    if constexpr (kVnniBuild) {  // negated, for vpdpwssd
        const __m256i nsc = _mm256_sub_epi16(_mm256_setzero_si256(), sc);
        for (int j = 0; j < RN; ++j) sumi[j] = madd_acc(sumi[j], nsc, bcast4(y[j] + kYBsums + 4 * p));
    } else {
        for (int j = 0; j < RN; ++j)
            sumi[j] = _mm256_sub_epi32(sumi[j], _mm256_madd_epi16(sc, bcast4(y[j] + kYBsums + 4 * p)));
    }
}

// The VNNI build's quad_dot: the products go straight into each token's int32 sums d[j] (or start them).
template <int RN>
inline __attribute__((always_inline)) void quad_dot32(__m256i w, const uint8_t* const* y, size_t off,
                                                      __m256i* d, bool first) {
    for (int j = 0; j < RN; ++j) d[j] = dot4(first ? _mm256_setzero_si256() : d[j], w, bcast4(y[j] + off));
}

// sumi[j] += d[j] * sc per int32 lane (the VNNI build: a sub-block's sums times the rows' scales, exact).
template <int RN>
inline __attribute__((always_inline)) void scale_add32(__m256i* sumi, const __m256i* d, __m256i sc) {
    for (int j = 0; j < RN; ++j) sumi[j] = _mm256_add_epi32(sumi[j], _mm256_mullo_epi32(d[j], sc));
}

// The same with vpdpwssd, where each d[j] fits int16 and sc has each row's scale in the low int16 of its
// lane, zero in the high one: the high halves (d's sign bits) then add nothing. One instruction instead of
// three.
template <int RN>
inline __attribute__((always_inline)) void scale_add16(__m256i* sumi, const __m256i* d, __m256i sc) {
    for (int j = 0; j < RN; ++j) sumi[j] = madd_acc(sumi[j], d[j], sc);
}

inline void store_8(float* c, __m256 acc) {
    _mm256_storeu_ps(c, acc);
}

// No software prefetch: a group is one contiguous stream and the groups of a matrix follow each other, which
// the hardware prefetchers follow; prefetching the bytes 1 or 2 KiB ahead measured no better (n = 1, k = 2048
// and 5632, 256 MiB matrix; noisy shared machine).

// Calls tile<RN> over the n tokens in tiles of kRN, with one smaller tile at the end.
template <int RN, class F>
inline void tile_tail(int rn, F&& f) {
    if constexpr (RN > 1) {
        if (rn < RN) return tile_tail<RN - 1>(rn, f);
    }
    f.template operator()<RN>();
}

// ---------------------------------------------------------------------------------------------------------
// Q4_K: y = d*sc*q - dmin*m per sub-block of 32, q = 4 bits, sc and m 6 bits.
//
// Group layout, per super-block (kQ4Bytes = 1184 bytes for 8 rows; the rows take 8 * 144 = 1152):
//   [0, 16)      d of rows 0..7 (fp16)
//   [16, 32)     dmin of rows 0..7 (fp16)
//   [32, 96)     scales: byte 16p + 2r + e = sc of row r, sub-block 2p + e
//   [96, 160)    mins, laid out as the scales
//   [160, 1184)  quants: sub-block u at 160 + 128u, four 32-byte vectors v; byte 32v + 4r + b holds element
//                32u + 4v + b of row r in its low nibble and element 32u + 16 + 4v + b in its high nibble.
// Int16 sums: a vpmaddubsw pair is at most 15*128*2 = 3840, so a sub-block's 8 quads (30720) fit.
// The min term per row, sum_u m_u * (bsum_2u + bsum_2u+1), is one vpmaddwd per pair of sub-blocks.

constexpr size_t kQ4Bytes = 32 + 64 + 64 + 1024;

// The 16-bit pairs of v (one row's sub-blocks 2p, 2p + 1) to dst + 16p, p = 0..3: how scales and mins
// are laid out in a group.
inline void put_pairs(uint8_t* dst, uint64_t v) {
    for (int p = 0; p < 4; ++p) {
        const uint16_t w = uint16_t(v >> (16 * p));
        __builtin_memcpy(dst + 16 * p, &w, 2);
    }
}

// get_scale_min_k4 (format/kquants.h) of the 8 sub-blocks at once, a byte each. File-local: see the rules in
// kernels/dispatch.h.
void scales_mins_k4(const uint8_t* q, uint8_t* sc, uint8_t* m) {
    uint32_t a, b, c;
    __builtin_memcpy(&a, q, 4);
    __builtin_memcpy(&b, q + 4, 4);
    __builtin_memcpy(&c, q + 8, 4);
    const uint32_t m6 = 0x3F3F3F3Fu, m4 = 0x0F0F0F0Fu, m2 = 0x03030303u;
    put_pairs(sc, (a & m6) | uint64_t((c & m4) | ((a >> 6) & m2) << 4) << 32);
    put_pairs(m, (b & m6) | uint64_t(((c >> 4) & m4) | ((b >> 6) & m2) << 4) << 32);
}

void pack_q4_K(int64_t k, const void* vrows, size_t lda, void* vgroup) {
    const uint8_t* rows = static_cast<const uint8_t*>(vrows);
    uint8_t* g = static_cast<uint8_t*>(vgroup);
    for (int64_t l = 0; l < k / QK_K; ++l, g += kQ4Bytes) {
        for (int r = 0; r < R; ++r) {
            const block_q4_K& x = reinterpret_cast<const block_q4_K*>(rows + size_t(r) * lda)[l];
            __builtin_memcpy(g + 2 * r, &x.d, 2);
            __builtin_memcpy(g + 16 + 2 * r, &x.dmin, 2);
            scales_mins_k4(x.scales, g + 32 + 2 * r, g + 96 + 2 * r);
            for (int u = 0; u < 8; ++u) {
                const uint8_t* q = x.qs + 32 * (u / 2);  // low nibbles: sub-block 2c, high: 2c + 1
                const int shift = 4 * (u % 2);
                for (int v = 0; v < 4; ++v) {  // four elements at a time, one per byte of a word
                    uint32_t a, b;
                    __builtin_memcpy(&a, q + 4 * v, 4);
                    __builtin_memcpy(&b, q + 16 + 4 * v, 4);
                    const uint32_t w = ((a >> shift) & 0x0F0F0F0Fu) | ((b >> shift) & 0x0F0F0F0Fu) << 4;
                    __builtin_memcpy(g + 160 + 128 * u + 32 * v + 4 * r, &w, 4);
                }
            }
        }
    }
}

template <int RN>
void tile_q4_K(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ctrl0 = scale_dup_ctrl(0, false), ctrl1 = scale_dup_ctrl(1, false);
    const __m256i ictrl0 = scale_lane_ctrl(0, 0), ictrl1 = scale_lane_ctrl(1, 0);
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t l = 0; l < nb; ++l, g += kQ4Bytes) {
        const uint8_t* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = b + size_t(j) * ldb + size_t(l) * sizeof(block_q8_K);
        __m256i sumi[RN];
        for (int j = 0; j < RN; ++j) sumi[j] = _mm256_setzero_si256();
        for (int u = 0; u < 8; ++u) {
            const __m256i sb = load_128x2(g + 32 + 16 * (u / 2));
            if constexpr (kVnniBuild) {
                // the sub-block's products per row in int32, its low and high halves (elements 32u + 0..15
                // and + 16..31, at most 15*128*16 each: they fit int16) in two chains, then times its scale
                // (scale_add16); two chains of 4 rather than one of 8 and vpmulld: n = 1 measured 3% faster
                const __m256i sc = _mm256_shuffle_epi8(sb, u % 2 ? ictrl1 : ictrl0);
                __m256i dl[RN], dh[RN];
                for (int v = 0; v < 4; ++v) {
                    const __m256i w = load_256(g + 160 + 128 * u + 32 * v);
                    const __m256i lo = _mm256_and_si256(w, m4),
                                  hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                    for (int j = 0; j < RN; ++j) {
                        const uint8_t* yq = y[j] + kYQs + 32 * u + 4 * v;
                        dl[j] = dot4(v == 0 ? _mm256_setzero_si256() : dl[j], lo, bcast4(yq));
                        dh[j] = dot4(v == 0 ? _mm256_setzero_si256() : dh[j], hi, bcast4(yq + 16));
                    }
                }
                scale_add16<RN>(sumi, dl, sc);
                scale_add16<RN>(sumi, dh, sc);
            } else {
                const __m256i sc = _mm256_shuffle_epi8(sb, u % 2 ? ctrl1 : ctrl0);
                __m256i s16[RN];
                for (int v = 0; v < 4; ++v) {
                    const __m256i w = load_256(g + 160 + 128 * u + 32 * v);
                    const __m256i lo = _mm256_and_si256(w, m4),
                                  hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                    for (int j = 0; j < RN; ++j) {
                        const uint8_t* yq = y[j] + kYQs + 32 * u + 4 * v;
                        const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(yq)),
                                                           _mm256_maddubs_epi16(hi, bcast4(yq + 16)));
                        s16[j] = v == 0 ? p : _mm256_add_epi16(s16[j], p);
                        keep_in_order(s16[j]);
                    }
                }
                for (int j = 0; j < RN; ++j) {
                    const __m256i s = _mm256_madd_epi16(s16[j], sc);
                    sumi[j] = _mm256_add_epi32(sumi[j], s);
                }
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        for (int j = 0; j < RN; ++j) {
            // bsum pairs -> the 8 sums of 32 as int16; after vpackssdw the pair (2p, 2p+1) is 32-bit element
            // 0, 1, 4, 5 for p = 0..3
            const __m256i bs = sum_i16_pairs(load_256(y[j] + kYBsums));
            const __m256i bs16 = _mm256_packs_epi32(bs, bs);
            __m256i summ = _mm256_setzero_si256();
            for (int p = 0; p < 4; ++p) {
                const __m256i pair = _mm256_permutevar8x32_epi32(bs16, _mm256_set1_epi32(p < 2 ? p : p + 2));
                const __m256i mins =
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 96 + 16 * p)));
                summ = madd_acc(summ, pair, mins);
            }
            float dy;
            __builtin_memcpy(&dy, y[j], 4);
            const __m256 vdy = _mm256_set1_ps(dy);
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, vdy), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, vdy), _mm256_cvtepi32_ps(summ), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) store_8(c + j * ldc, acc[j]);
}

// ---------------------------------------------------------------------------------------------------------
// Q5_K: as Q4_K with a fifth bit, q = 0..31.
//
// Group layout, per super-block (kQ5Bytes = 1440 bytes for 8 rows; the rows take 8 * 176 = 1408):
//   [0, 160)     d, dmin, scales and mins as Q4_K
//   [160, 1440)  quants: sub-block u at 160 + 160u, five 32-byte vectors V0..V4; byte 4r + b of each
//                concerns elements 32u + 4t + b (quads t = 0..7) of row r, with q_t its 5 bits:
//                  V_t bits 0..4 = q_t (t = 0..4),
//                  V0, V2, V4 bits 5..7 = bits 0..2 of q5, q6, q7,
//                  V1 bits 5..6 = bits 3..4 of q5,   V3 bits 5..6 = bits 3..4 of q6,
//                  V1 bit 7 = bit 3 of q7,           V3 bit 7 = bit 4 of q7
//                so quads 0..4 unpack with one vpand each, 5 and 6 with five operations, 7 with eight
//                (23 for 8 quads, where Q4_K's nibbles plus a plane of fifth bits as Q5_0's would take 35).
// Int16 sums: a vpmaddubsw pair is at most 31*128*2 = 7936, so 4 quads add up before vpmaddwd (two chains
// per sub-block). The min term is Q4_K's.

constexpr size_t kQ5Bytes = 160 + 1280;

void pack_q5_K(int64_t k, const void* vrows, size_t lda, void* vgroup) {
    const uint8_t* rows = static_cast<const uint8_t*>(vrows);
    uint8_t* g = static_cast<uint8_t*>(vgroup);
    const uint64_t m1 = 0x0101010101010101u, m2 = 0x0303030303030303u, m3 = 0x0707070707070707u,
                   m4 = 0x0F0F0F0F0F0F0F0Fu;
    for (int64_t l = 0; l < k / QK_K; ++l, g += kQ5Bytes) {
        for (int r = 0; r < R; ++r) {
            const block_q5_K& x = reinterpret_cast<const block_q5_K*>(rows + size_t(r) * lda)[l];
            __builtin_memcpy(g + 2 * r, &x.d, 2);
            __builtin_memcpy(g + 16 + 2 * r, &x.dmin, 2);
            scales_mins_k4(x.scales, g + 32 + 2 * r, g + 96 + 2 * r);
            // Sub-block u = 2c + e is nibble e of qs[32c ..] and bit u of qh: quad t is the word at 4t of
            // each, quads 2i, 2i + 1 one uint64 (w[i], h[i]), shifted down to the next field after each u. A
            // bit that a shift moves into the next byte down lands above the mask.
            uint64_t h[4];
            __builtin_memcpy(h, x.qh, 32);
            for (int c = 0; c < 4; ++c) {
                uint64_t w[4];
                __builtin_memcpy(w, x.qs + 32 * c, 32);
                for (int e = 0; e < 2; ++e) {
                    uint64_t q[4];  // q[i] = quads 2i, 2i + 1: one 5-bit quant per byte
                    for (int i = 0; i < 4; ++i) {
                        q[i] = (w[i] & m4) | (h[i] & m1) << 4;
                        w[i] >>= 4;
                        h[i] >>= 1;
                    }
                    const uint64_t q5 = q[2] >> 32, q6 = q[3] & 0xFFFFFFFFu, q7 = q[3] >> 32;
                    const uint64_t v01 =
                        q[0] | (q5 & m3) << 5 | ((q5 >> 3) & m2) << 37 | ((q7 >> 3) & m1) << 39;
                    const uint64_t v23 =
                        q[1] | (q6 & m3) << 5 | ((q6 >> 3) & m2) << 37 | ((q7 >> 4) & m1) << 39;
                    const uint32_t v4 = uint32_t(q[2] | (q7 & m3) << 5);
                    uint8_t* v = g + 160 + 160 * (2 * c + e) + 4 * r;
                    const uint32_t vs[5] = {uint32_t(v01), uint32_t(v01 >> 32), uint32_t(v23),
                                            uint32_t(v23 >> 32), v4};
                    for (int t = 0; t < 5; ++t) __builtin_memcpy(v + 32 * t, &vs[t], 4);
                }
            }
        }
    }
}

// Quad t of a sub-block from its five vectors. 16-bit shifts: every field is masked before it moves, so no
// bit crosses into a neighbouring byte.
template <int T>
inline __m256i q5_quad(const uint8_t* v) {
    const __m256i m5 = _mm256_set1_epi8(0x1F), top3 = _mm256_set1_epi8(char(0xE0));
    if constexpr (T < 5) {
        return _mm256_and_si256(load_256(v + 32 * T), m5);
    } else if constexpr (T < 7) {
        const __m256i lo = _mm256_srli_epi16(_mm256_and_si256(load_256(v + 64 * (T - 5)), top3), 5);
        const __m256i hi =
            _mm256_srli_epi16(_mm256_and_si256(load_256(v + 32 + 64 * (T - 5)), _mm256_set1_epi8(0x60)), 2);
        return _mm256_or_si256(lo, hi);
    } else {
        const __m256i bit7 = _mm256_set1_epi8(char(0x80));
        const __m256i lo = _mm256_srli_epi16(_mm256_and_si256(load_256(v + 128), top3), 5);
        const __m256i b3 = _mm256_srli_epi16(_mm256_and_si256(load_256(v + 32), bit7), 4);
        const __m256i b4 = _mm256_srli_epi16(_mm256_and_si256(load_256(v + 96), bit7), 3);
        return _mm256_or_si256(lo, _mm256_or_si256(b3, b4));
    }
}

template <int RN>
void tile_q5_K(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    const __m256i ctrl0 = scale_dup_ctrl(0, false), ctrl1 = scale_dup_ctrl(1, false);
    const __m256i ictrl0 = scale_lane_ctrl(0, 0), ictrl1 = scale_lane_ctrl(1, 0);
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t l = 0; l < nb; ++l, g += kQ5Bytes) {
        const uint8_t* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = b + size_t(j) * ldb + size_t(l) * sizeof(block_q8_K);
        __m256i sumi[RN];
        for (int j = 0; j < RN; ++j) sumi[j] = _mm256_setzero_si256();
        for (int u = 0; u < 8; ++u) {
            const __m256i sb = load_128x2(g + 32 + 16 * (u / 2));
            const uint8_t* v = g + 160 + 160 * u;
            const size_t o = kYQs + 32 * u;
            if constexpr (kVnniBuild) {  // the sub-block in int32 (at most 31*128*32), then times its scale
                __m256i d[RN];
                quad_dot32<RN>(q5_quad<0>(v), y, o, d, true);
                quad_dot32<RN>(q5_quad<1>(v), y, o + 4, d, false);
                quad_dot32<RN>(q5_quad<2>(v), y, o + 8, d, false);
                quad_dot32<RN>(q5_quad<3>(v), y, o + 12, d, false);
                quad_dot32<RN>(q5_quad<4>(v), y, o + 16, d, false);
                quad_dot32<RN>(q5_quad<5>(v), y, o + 20, d, false);
                quad_dot32<RN>(q5_quad<6>(v), y, o + 24, d, false);
                quad_dot32<RN>(q5_quad<7>(v), y, o + 28, d, false);
                scale_add32<RN>(sumi, d, _mm256_shuffle_epi8(sb, u % 2 ? ictrl1 : ictrl0));
                continue;
            }
            const __m256i sc = _mm256_shuffle_epi8(sb, u % 2 ? ctrl1 : ctrl0);
            __m256i s16[RN];
            quad_dot<RN>(q5_quad<0>(v), y, o, s16, true);
            quad_dot<RN>(q5_quad<1>(v), y, o + 4, s16, false);
            quad_dot<RN>(q5_quad<2>(v), y, o + 8, s16, false);
            quad_dot<RN>(q5_quad<3>(v), y, o + 12, s16, false);
            for (int j = 0; j < RN; ++j) sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j], sc));
            quad_dot<RN>(q5_quad<4>(v), y, o + 16, s16, true);
            quad_dot<RN>(q5_quad<5>(v), y, o + 20, s16, false);
            quad_dot<RN>(q5_quad<6>(v), y, o + 24, s16, false);
            quad_dot<RN>(q5_quad<7>(v), y, o + 28, s16, false);
            for (int j = 0; j < RN; ++j) sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j], sc));
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        for (int j = 0; j < RN; ++j) {
            // as Q4_K
            const __m256i bs = sum_i16_pairs(load_256(y[j] + kYBsums));
            const __m256i bs16 = _mm256_packs_epi32(bs, bs);
            __m256i summ = _mm256_setzero_si256();
            for (int p = 0; p < 4; ++p) {
                const __m256i pair = _mm256_permutevar8x32_epi32(bs16, _mm256_set1_epi32(p < 2 ? p : p + 2));
                const __m256i mins =
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 96 + 16 * p)));
                summ = madd_acc(summ, pair, mins);
            }
            float dy;
            __builtin_memcpy(&dy, y[j], 4);
            const __m256 vdy = _mm256_set1_ps(dy);
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, vdy), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, vdy), _mm256_cvtepi32_ps(summ), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) store_8(c + j * ldc, acc[j]);
}

// ---------------------------------------------------------------------------------------------------------
// Q6_K: y = d*sc*(q-32) per sub-block of 16, q = 6 bits stored as value + 32 (0..63), sc int8.
//
// Group layout, per super-block (kQ6Bytes = 1680 bytes for 8 rows, as the rows: 8 * 210):
//   [0, 16)      d of rows 0..7 (fp16)
//   [16, 144)    scales: byte 16p + 2r + e = scale of row r, sub-block 2p + e
//   [144, 1680)  quants: sub-block s (16 elements = quads t = 0..3) at 144 + 96s, three 32-byte vectors
//                A, B, C; byte 4r + b of each concerns elements 16s + 4t + b of row r, with q_t its 6 bits:
//                  A = q_0 | (q_2 >> 4) << 6,   B = q_1 | (q_3 >> 4) << 6,   C = (q_2 & 15) | (q_3 & 15) << 4
//                so quads 0 and 1 unpack with one vpand each, quads 2 and 3 with four or five operations
//                (11 in all, where ggml's ql/qh split takes 16).
// Int16 sums: a vpmaddubsw pair is at most 63*128*2 = 16128, so only two quads add up before vpmaddwd.
// The offset: sum sc*(q-32)*y = sum sc*q*y - sum_s (32 sc_s) * bsum_s, one vpmaddwd per pair of sub-blocks.

constexpr size_t kQ6Bytes = 16 + 128 + 1536;

void pack_q6_K(int64_t k, const void* vrows, size_t lda, void* vgroup) {
    const uint8_t* rows = static_cast<const uint8_t*>(vrows);
    uint8_t* g = static_cast<uint8_t*>(vgroup);
    for (int64_t l = 0; l < k / QK_K; ++l, g += kQ6Bytes) {
        for (int r = 0; r < R; ++r) {
            const block_q6_K& x = reinterpret_cast<const block_q6_K*>(rows + size_t(r) * lda)[l];
            __builtin_memcpy(g + 2 * r, &x.d, 2);
            for (int s = 0; s < 16; ++s) g[16 + 16 * (s / 2) + 2 * r + s % 2] = uint8_t(x.scales[s]);
            // the 6-bit quants in element order, as in vec_dot_block_q6_K_q8_K (halves of 128: ql, qh)
            uint8_t q[QK_K];
            for (int h = 0; h < 2; ++h) {
                const uint8_t* ql = x.ql + 64 * h;
                const uint8_t* qh = x.qh + 32 * h;
                for (int e = 0; e < 32; ++e) {
                    q[128 * h + e] = uint8_t((ql[e] & 0xF) | (qh[e] & 3) << 4);
                    q[128 * h + 32 + e] = uint8_t((ql[32 + e] & 0xF) | ((qh[e] >> 2) & 3) << 4);
                    q[128 * h + 64 + e] = uint8_t((ql[e] >> 4) | ((qh[e] >> 4) & 3) << 4);
                    q[128 * h + 96 + e] = uint8_t((ql[32 + e] >> 4) | ((qh[e] >> 6) & 3) << 4);
                }
            }
            for (int s = 0; s < 16; ++s) {
                uint8_t* o = g + 144 + 96 * s + 4 * r;
                for (int b = 0; b < 4; ++b) {
                    const int q0 = q[16 * s + b], q1 = q[16 * s + 4 + b], q2 = q[16 * s + 8 + b],
                              q3 = q[16 * s + 12 + b];
                    o[b] = uint8_t(q0 | (q2 >> 4) << 6);              // A
                    o[32 + b] = uint8_t(q1 | (q3 >> 4) << 6);         // B
                    o[64 + b] = uint8_t((q2 & 15) | (q3 & 15) << 4);  // C
                }
            }
        }
    }
}

template <int RN>
void tile_q6_K(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), m6 = _mm256_set1_epi8(0x3F);
    const __m256i ctrl0 = scale_dup_ctrl(0, true), ctrl1 = scale_dup_ctrl(1, true);
    const __m256i ictrl0 = scale_lane_ctrl(0, 3), ictrl1 = scale_lane_ctrl(1, 3);
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t l = 0; l < nb; ++l, g += kQ6Bytes) {
        const uint8_t* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = b + size_t(j) * ldb + size_t(l) * sizeof(block_q8_K);
        __m256i sumi[RN];
        for (int j = 0; j < RN; ++j) sumi[j] = _mm256_setzero_si256();
        for (int p = 0; p < 8; ++p) {
            const uint8_t* sp = g + 16 + 16 * p;
            sub_scaled_bsums<RN, 5>(sumi, sp, y, p);  // 32 sc: |32 sc| <= 4096
            const __m256i sb = load_128x2(sp);
            for (int e = 0; e < 2; ++e) {
                const int s = 2 * p + e;
                const __m256i sc = kVnniBuild
                                       ? _mm256_srai_epi32(_mm256_shuffle_epi8(sb, e ? ictrl1 : ictrl0), 24)
                                       : _mm256_srai_epi16(_mm256_shuffle_epi8(sb, e ? ctrl1 : ctrl0), 8);
                const uint8_t* q = g + 144 + 96 * s;
                const __m256i va = load_256(q), vb = load_256(q + 32), vc = load_256(q + 64);
                // 16-bit shifts: the bits that cross into a byte from its neighbour are masked off
                const __m256i q0 = _mm256_and_si256(va, m6), q1 = _mm256_and_si256(vb, m6);
                const __m256i q2 =
                    _mm256_or_si256(_mm256_and_si256(vc, m4), _mm256_and_si256(_mm256_srli_epi16(va, 2), m2));
                const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(vc, 4), m4),
                                                   _mm256_and_si256(_mm256_srli_epi16(vb, 2), m2));
                for (int j = 0; j < RN; ++j) {
                    const uint8_t* yq = y[j] + kYQs + 16 * s;
                    if constexpr (kVnniBuild) {  // in int32 (at most 63*128*16), then times the scale
                        __m256i dd = dot4(_mm256_setzero_si256(), q0, bcast4(yq));
                        dd = dot4(dd, q1, bcast4(yq + 4));
                        dd = dot4(dd, q2, bcast4(yq + 8));
                        dd = dot4(dd, q3, bcast4(yq + 12));
                        sumi[j] = _mm256_add_epi32(sumi[j], _mm256_mullo_epi32(dd, sc));
                        continue;
                    }
                    const __m256i a = _mm256_add_epi16(_mm256_maddubs_epi16(q0, bcast4(yq)),
                                                       _mm256_maddubs_epi16(q1, bcast4(yq + 4)));
                    const __m256i bb = _mm256_add_epi16(_mm256_maddubs_epi16(q2, bcast4(yq + 8)),
                                                        _mm256_maddubs_epi16(q3, bcast4(yq + 12)));
                    sumi[j] = _mm256_add_epi32(
                        sumi[j], _mm256_add_epi32(_mm256_madd_epi16(a, sc), _mm256_madd_epi16(bb, sc)));
                }
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        for (int j = 0; j < RN; ++j) {
            float dy;
            __builtin_memcpy(&dy, y[j], 4);
            acc[j] =
                _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) store_8(c + j * ldc, acc[j]);
}

// ---------------------------------------------------------------------------------------------------------
// Q2_K: y = d*(sc&15)*q - dmin*(sc>>4) per sub-block of 16, q = 2 bits.
//
// Group layout, per super-block (kQ2Bytes = 672 bytes for 8 rows, as the rows: 8 * 84):
//   [0, 16)      d of rows 0..7 (fp16)
//   [16, 32)     dmin of rows 0..7 (fp16)
//   [32, 160)    scale bytes as stored (scale | min << 4): byte 16p + 2r + e = row r's, sub-block 2p + e;
//                kept as nibbles (one vpand after the vpshufb, one shift after widening the mins) so the
//                group is no larger than the rows
//   [160, 672)   quants: sub-block s (quads t = 0..3) at 160 + 32s, one 32-byte vector; byte 4r + b holds
//                q0 | q1 << 2 | q2 << 4 | q3 << 6, q_t of element 16s + 4t + b of row r.
// Int16 sums: trivially in range. The min term per row, sum_s m_s * bsum_s, one vpmaddwd per pair.

constexpr size_t kQ2Bytes = 32 + 128 + 512;

void pack_q2_K(int64_t k, const void* vrows, size_t lda, void* vgroup) {
    const uint8_t* rows = static_cast<const uint8_t*>(vrows);
    uint8_t* g = static_cast<uint8_t*>(vgroup);
    const uint64_t m2 = 0x0303030303030303u;
    for (int64_t l = 0; l < k / QK_K; ++l, g += kQ2Bytes) {
        for (int r = 0; r < R; ++r) {
            const block_q2_K& x = reinterpret_cast<const block_q2_K*>(rows + size_t(r) * lda)[l];
            __builtin_memcpy(g + 2 * r, &x.d, 2);
            __builtin_memcpy(g + 16 + 2 * r, &x.dmin, 2);
            for (int p = 0; p < 8; ++p) __builtin_memcpy(g + 32 + 16 * p + 2 * r, x.scales + 2 * p, 2);
            // Sub-block s = 8h + 2f + c is field f (bits 2f..2f+1) of the 16 bytes qs[32h + 16c ..]: quad t
            // is the word at 4t. Words 0, 1 and 2, 3 go in one uint64 each; a bit that a shift moves into the
            // next byte down lands above the mask.
            for (int h = 0; h < 2; ++h) {
                for (int c = 0; c < 2; ++c) {
                    uint64_t w01, w23;
                    __builtin_memcpy(&w01, x.qs + 32 * h + 16 * c, 8);
                    __builtin_memcpy(&w23, x.qs + 32 * h + 16 * c + 8, 8);
                    for (int f = 0; f < 4; ++f) {
                        const uint64_t q = ((w01 >> (2 * f)) & m2) | ((w23 >> (2 * f)) & m2) << 4;
                        // q0 | q1 << 2 | q2 << 4 | q3 << 6
                        const uint32_t w = uint32_t(q) | uint32_t(q >> 32) << 2;
                        __builtin_memcpy(g + 160 + 32 * (8 * h + 2 * f + c) + 4 * r, &w, 4);
                    }
                }
            }
        }
    }
}

template <int RN>
void tile_q2_K(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    const __m256i m2 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0F);
    const __m256i ctrl0 = scale_dup_ctrl(0, false), ctrl1 = scale_dup_ctrl(1, false);
    const __m256i ictrl0 = scale_lane_ctrl(0, 0), ictrl1 = scale_lane_ctrl(1, 0);
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t l = 0; l < nb; ++l, g += kQ2Bytes) {
        const uint8_t* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = b + size_t(j) * ldb + size_t(l) * sizeof(block_q8_K);
        __m256i sumi[RN];
        for (int j = 0; j < RN; ++j) sumi[j] = _mm256_setzero_si256();
        for (int p = 0; p < 8; ++p) {
            const __m256i sb = load_128x2(g + 32 + 16 * p);
            for (int e = 0; e < 2; ++e) {
                const int s = 2 * p + e;
                // 16-bit shifts: what crosses from the neighbouring byte lands above the mask
                const __m256i w = load_256(g + 160 + 32 * s);
                const size_t o = kYQs + 16 * s;
                // the VNNI build: the sub-block in int32 (at most 3*128*16: fits int16), times its scale
                if constexpr (kVnniBuild) {
                    __m256i d[RN];
                    quad_dot32<RN>(_mm256_and_si256(w, m2), y, o, d, true);
                    quad_dot32<RN>(_mm256_and_si256(_mm256_srli_epi16(w, 2), m2), y, o + 4, d, false);
                    quad_dot32<RN>(_mm256_and_si256(_mm256_srli_epi16(w, 4), m2), y, o + 8, d, false);
                    quad_dot32<RN>(_mm256_and_si256(_mm256_srli_epi16(w, 6), m2), y, o + 12, d, false);
                    scale_add16<RN>(sumi, d,
                                    _mm256_and_si256(_mm256_shuffle_epi8(sb, e ? ictrl1 : ictrl0), m4));
                    continue;
                }
                const __m256i sc = _mm256_and_si256(_mm256_shuffle_epi8(sb, e ? ctrl1 : ctrl0), m4);
                __m256i s16[RN];
                quad_dot<RN>(_mm256_and_si256(w, m2), y, o, s16, true);
                quad_dot<RN>(_mm256_and_si256(_mm256_srli_epi16(w, 2), m2), y, o + 4, s16, false);
                quad_dot<RN>(_mm256_and_si256(_mm256_srli_epi16(w, 4), m2), y, o + 8, s16, false);
                quad_dot<RN>(_mm256_and_si256(_mm256_srli_epi16(w, 6), m2), y, o + 12, s16, false);
                for (int j = 0; j < RN; ++j)
                    sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j], sc));
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
        for (int j = 0; j < RN; ++j) {
            __m256i summ = _mm256_setzero_si256();
            for (int p = 0; p < 8; ++p) {
                // the mins of sub-blocks 2p, 2p+1 as int16 (the high nibbles), times the token's bsum pair
                const __m256i mins = _mm256_srli_epi16(
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 32 + 16 * p))),
                    4);
                summ = madd_acc(summ, mins, bcast4(y[j] + kYBsums + 4 * p));
            }
            float dy;
            __builtin_memcpy(&dy, y[j], 4);
            const __m256 vdy = _mm256_set1_ps(dy);
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, vdy), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
            acc[j] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, vdy), _mm256_cvtepi32_ps(summ), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) store_8(c + j * ldc, acc[j]);
}

// ---------------------------------------------------------------------------------------------------------
// Q3_K: y = d*sc*(q-4) per sub-block of 16, q = 2 bits + the hmask bit << 2 (0..7), sc 6 bits - 32 (int8).
//
// Group layout, per super-block (kQ3Bytes = 912 bytes for 8 rows; the rows take 8 * 110 = 880):
//   [0, 16)      d of rows 0..7 (fp16)
//   [16, 144)    scales, as Q6_K's: byte 16p + 2r + e = sc of row r, sub-block 2p + e
//   [144, 912)   quants: sub-blocks 2p, 2p+1 (quads t = 0..7) at 144 + 96p, three 32-byte vectors A, B, C;
//                byte 4r + b of each concerns elements 32p + 4t + b of row r, with q_t its 3 bits:
//                  A = q0 | q1 << 3 | (q6 & 3) << 6,   B = q2 | q3 << 3 | (q7 & 3) << 6,
//                  C = q4 | q5 << 3 | (q6 >> 2) << 6 | (q7 >> 2) << 7
//                so quads 0, 2, 4 unpack with one vpand, 1, 3, 5 with two operations, 6 and 7 with five
//                (19 for 8 quads).
// Int16 sums: a sub-block's 4 quads are at most 7*128*2*4 = 7168. The offset as Q6_K's: sum sc*(q-4)*y =
// sum sc*q*y - sum_s (4 sc_s) * bsum_s.

constexpr size_t kQ3Bytes = 16 + 128 + 768;

void pack_q3_K(int64_t k, const void* vrows, size_t lda, void* vgroup) {
    const uint8_t* rows = static_cast<const uint8_t*>(vrows);
    uint8_t* g = static_cast<uint8_t*>(vgroup);
    const uint64_t m1 = 0x0101010101010101u, m2 = 0x0303030303030303u, m4 = 0x0F0F0F0F0F0F0F0Fu,
                   m80 = 0x8080808080808080u;
    for (int64_t l = 0; l < k / QK_K; ++l, g += kQ3Bytes) {
        for (int r = 0; r < R; ++r) {
            const block_q3_K& x = reinterpret_cast<const block_q3_K*>(rows + size_t(r) * lda)[l];
            __builtin_memcpy(g + 2 * r, &x.d, 2);
            // q3_K_scale (format/kquants.h) eight at a time: sub-blocks 8j + i take the low (j = 0) or high
            // (j = 1) nibble of scales[i] and bits 2(2j + i / 4).. of scales[8 + i % 4]. Each byte v < 64
            // becomes v - 32 as ((v | 128) - 32) ^ 128, so that no borrow crosses into the next byte.
            uint64_t lo;
            uint32_t hi;
            __builtin_memcpy(&lo, x.scales, 8);
            __builtin_memcpy(&hi, x.scales + 8, 4);
            for (int j = 0; j < 2; ++j) {
                const uint64_t h03 = (hi >> (4 * j)) & 0x03030303u, h47 = (hi >> (4 * j + 2)) & 0x03030303u;
                const uint64_t v = ((lo >> (4 * j)) & m4) | (h03 | h47 << 32) << 4;
                put_pairs(g + 16 + 64 * j + 2 * r, ((v | m80) - 0x2020202020202020u) ^ m80);
            }
            // Sub-blocks 2p, 2p + 1 (p = 4h + f) are bits 2f, 2f + 1 of qs[32h ..] and bit p of hmask: quad t
            // is the word at 4t of each, quads 2i, 2i + 1 one uint64 (w[i], m[i]), shifted down to the next
            // field after each p. A bit that a shift moves into the next byte down lands above the mask.
            uint64_t m[4];
            __builtin_memcpy(m, x.hmask, 32);
            for (int h = 0; h < 2; ++h) {
                uint64_t w[4];
                __builtin_memcpy(w, x.qs + 32 * h, 32);
                for (int f = 0; f < 4; ++f) {
                    const int p = 4 * h + f;
                    uint64_t q[4];  // q[i] = quads 2i, 2i + 1: one 3-bit quant per byte
                    for (int i = 0; i < 4; ++i) {
                        q[i] = (w[i] & m2) | (m[i] & m1) << 2;
                        w[i] >>= 2;
                        m[i] >>= 1;
                    }
                    const uint64_t even = (q[0] & 0xFFFFFFFFu) | q[1] << 32;           // quads 0, 2
                    const uint64_t odd = (q[0] >> 32) | (q[1] & 0xFFFFFFFF00000000u);  // quads 1, 3
                    const uint64_t ab = even | odd << 3 | (q[3] & m2) << 6;            // A, B
                    const uint32_t q4 = uint32_t(q[2]), q5 = uint32_t(q[2] >> 32);
                    const uint32_t q6 = uint32_t(q[3]), q7 = uint32_t(q[3] >> 32);
                    const uint32_t c =
                        q4 | q5 << 3 | ((q6 >> 2) & 0x01010101u) << 6 | ((q7 >> 2) & 0x01010101u) << 7;
                    const uint32_t vs[3] = {uint32_t(ab), uint32_t(ab >> 32), c};
                    uint8_t* v = g + 144 + 96 * p + 4 * r;
                    for (int t = 0; t < 3; ++t) __builtin_memcpy(v + 32 * t, &vs[t], 4);
                }
            }
        }
    }
}

// Quad t of a pair of sub-blocks from A, B, C (16-bit shifts: what crosses from the neighbouring byte lands
// above the mask).
template <int T>
inline __m256i q3_quad(const uint8_t* v) {
    const __m256i m3 = _mm256_set1_epi8(7);
    if constexpr (T < 6) {
        const __m256i w = load_256(v + 32 * (T / 2));
        return _mm256_and_si256(T % 2 ? _mm256_srli_epi16(w, 3) : w, m3);
    } else {
        const __m256i lo =
            _mm256_and_si256(_mm256_srli_epi16(load_256(v + 32 * (T - 6)), 6), _mm256_set1_epi8(3));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(load_256(v + 64), T - 2), _mm256_set1_epi8(4));
        return _mm256_or_si256(lo, hi);
    }
}

template <int RN>
void tile_q3_K(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
    const __m256i ctrl0 = scale_dup_ctrl(0, true), ctrl1 = scale_dup_ctrl(1, true);
    const __m256i ictrl0 = scale_lane_ctrl(0, 1), ictrl1 = scale_lane_ctrl(1, 1);
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t l = 0; l < nb; ++l, g += kQ3Bytes) {
        const uint8_t* y[RN];
        for (int j = 0; j < RN; ++j) y[j] = b + size_t(j) * ldb + size_t(l) * sizeof(block_q8_K);
        __m256i sumi[RN];
        for (int j = 0; j < RN; ++j) sumi[j] = _mm256_setzero_si256();
        for (int p = 0; p < 8; ++p) {
            const uint8_t* sp = g + 16 + 16 * p;
            sub_scaled_bsums<RN, 2>(sumi, sp, y, p);  // 4 sc: |4 sc| <= 128
            const __m256i sb = load_128x2(sp);
            const uint8_t* v = g + 144 + 96 * p;
            const size_t o = kYQs + 32 * p;
            // the VNNI build: each sub-block in int32 (at most 7*128*16: fits int16), times its scale
            if constexpr (kVnniBuild) {
                __m256i d[RN];
                quad_dot32<RN>(q3_quad<0>(v), y, o, d, true);
                quad_dot32<RN>(q3_quad<1>(v), y, o + 4, d, false);
                quad_dot32<RN>(q3_quad<2>(v), y, o + 8, d, false);
                quad_dot32<RN>(q3_quad<3>(v), y, o + 12, d, false);
                scale_add16<RN>(sumi, d, _mm256_srai_epi16(_mm256_shuffle_epi8(sb, ictrl0), 8));
                quad_dot32<RN>(q3_quad<4>(v), y, o + 16, d, true);
                quad_dot32<RN>(q3_quad<5>(v), y, o + 20, d, false);
                quad_dot32<RN>(q3_quad<6>(v), y, o + 24, d, false);
                quad_dot32<RN>(q3_quad<7>(v), y, o + 28, d, false);
                scale_add16<RN>(sumi, d, _mm256_srai_epi16(_mm256_shuffle_epi8(sb, ictrl1), 8));
                continue;
            }
            const __m256i sc0 = _mm256_srai_epi16(_mm256_shuffle_epi8(sb, ctrl0), 8),
                          sc1 = _mm256_srai_epi16(_mm256_shuffle_epi8(sb, ctrl1), 8);
            __m256i s16[RN];
            quad_dot<RN>(q3_quad<0>(v), y, o, s16, true);
            quad_dot<RN>(q3_quad<1>(v), y, o + 4, s16, false);
            quad_dot<RN>(q3_quad<2>(v), y, o + 8, s16, false);
            quad_dot<RN>(q3_quad<3>(v), y, o + 12, s16, false);
            for (int j = 0; j < RN; ++j) sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j], sc0));
            quad_dot<RN>(q3_quad<4>(v), y, o + 16, s16, true);
            quad_dot<RN>(q3_quad<5>(v), y, o + 20, s16, false);
            quad_dot<RN>(q3_quad<6>(v), y, o + 24, s16, false);
            quad_dot<RN>(q3_quad<7>(v), y, o + 28, s16, false);
            for (int j = 0; j < RN; ++j) sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j], sc1));
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        for (int j = 0; j < RN; ++j) {
            float dy;
            __builtin_memcpy(&dy, y[j], 4);
            acc[j] =
                _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) store_8(c + j * ldc, acc[j]);
}

// ---------------------------------------------------------------------------------------------------------

constexpr int kRN =
    4;  // tokens per tile: RN accumulators, RN int32 and RN int16 partial sums in 16 registers

template <template <int> class Tile>
void packed_gemm(int64_t k, const void* group, const void* vb, size_t ldb, const int32_t*, int64_t, float* c,
                 int64_t ldc, int64_t n) {
    const uint8_t* g = static_cast<const uint8_t*>(group);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    for (int64_t j = 0; j < n; j += kRN) {
        const int rn = int(n - j < kRN ? n - j : kRN);
        tile_tail<kRN>(
            rn, [&]<int RN>() { Tile<RN>::run(k / QK_K, g, b + size_t(j) * ldb, ldb, c + j * ldc, ldc); });
    }
}

template <int RN>
struct Q2Tile {
    static void run(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
        tile_q2_K<RN>(nb, g, b, ldb, c, ldc);
    }
};
template <int RN>
struct Q3Tile {
    static void run(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
        tile_q3_K<RN>(nb, g, b, ldb, c, ldc);
    }
};
template <int RN>
struct Q4Tile {
    static void run(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
        tile_q4_K<RN>(nb, g, b, ldb, c, ldc);
    }
};
template <int RN>
struct Q5Tile {
    static void run(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
        tile_q5_K<RN>(nb, g, b, ldb, c, ldc);
    }
};
template <int RN>
struct Q6Tile {
    static void run(int64_t nb, const uint8_t* g, const uint8_t* b, size_t ldb, float* c, int64_t ldc) {
        tile_q6_K<RN>(nb, g, b, ldb, c, ldc);
    }
};

// constexpr objects: the static initializers pass their addresses only (kernels/dispatch.h Registrar).
template <kernels::PackFn kPack, template <int> class Tile, size_t kBytes>
constexpr kernels::CpuKernels kquant_kernels = {
    .pack = kPack, .packed_gemm = packed_gemm<Tile>, .pack_block_bytes = kBytes, .pack_needs_sums = false};

const kernels::Registrar q2_K_packed(Isa::Avx2, TypeId::Q2_K, kquant_kernels<pack_q2_K, Q2Tile, kQ2Bytes>,
                                     this_build_slots());
const kernels::Registrar q3_K_packed(Isa::Avx2, TypeId::Q3_K, kquant_kernels<pack_q3_K, Q3Tile, kQ3Bytes>,
                                     this_build_slots());
const kernels::Registrar q4_K_packed(Isa::Avx2, TypeId::Q4_K, kquant_kernels<pack_q4_K, Q4Tile, kQ4Bytes>,
                                     this_build_slots());
const kernels::Registrar q5_K_packed(Isa::Avx2, TypeId::Q5_K, kquant_kernels<pack_q5_K, Q5Tile, kQ5Bytes>,
                                     this_build_slots());
const kernels::Registrar q6_K_packed(Isa::Avx2, TypeId::Q6_K, kquant_kernels<pack_q6_K, Q6Tile, kQ6Bytes>,
                                     this_build_slots());

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
