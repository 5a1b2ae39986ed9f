// Helpers shared by the AVX2 kernel files, and the register-blocked gemm driver they all use.
//
// Include it only inside a file's `#if defined(__AVX2__)` section: everything here sits in an anonymous
// namespace (internal linkage), so each AVX2 translation unit has its own copies and the linker can never
// hand one of them to scalar code (the rule in kernels/dispatch.h).
//
// Dot products (ggml's AVX2 scheme, FORMATS.md §3): a block's quants are unpacked into 32 int8 lanes,
// multiplied with the activation's int8 lanes by vpmaddubsw (u8 x i8, adjacent pairs summed into int16; the
// unsigned operand is the weight, or |weight| with the sign moved onto the activation), widened to 8 int32
// lanes by vpmaddwd, converted to float and accumulated with the block's scale product by one FMA into 8
// float lanes, which are summed once at the end (hsum). Integer parts are exact; only the float order differs
// from the scalar reference.
//
// gemm (kernels::GemmFn) covers an m x n block of outputs with RM x RN register tiles (llamafile's tinyBLAS):
// each tile keeps RM*RN accumulators in registers, loads and unpacks each weight block once for RN tokens and
// each activation block once for RM rows. Every output is computed by the same instruction sequence whatever
// the tile, so a 1 x 1 tile is the kernel's vec_dot.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace qrt::avx2 {
namespace {

inline float half_to_float(uint16_t h) {
    return _cvtsh_ss(h);
}

// The sum of 4 lanes: (0+2) + (1+3).
inline float hsum4(__m128 r) {
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// The sum of the 8 lanes: (upper + lower) halves, then pairs, then the last two (ggml hsum_float_8).
inline float hsum(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// 16 bytes of nibbles -> 32 bytes: the low nibbles, then the high nibbles (ggml bytes_from_nibbles_32).
inline __m256i bytes_from_nibbles_32(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// Bit e of the 32-bit word -> byte e = 0xFF if set, else 0 (ggml bytes_from_bits_32): broadcast byte
// e/8 of the word to byte e, set every bit but bit e%8, and compare with all ones.
inline __m256i bytes_from_bits_32_word(uint32_t x32) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(x32)), shuf);
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    return _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1));
}

// The same for the little-endian 32-bit qh of a Q5 block.
inline __m256i bytes_from_bits_32(const uint8_t* qh) {
    uint32_t x32;
    __builtin_memcpy(&x32, qh, sizeof x32);
    return bytes_from_bits_32_word(x32);
}

inline __m256i load_256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 int16 lanes -> 8 int32 lanes, adjacent pairs summed.
inline __m256i sum_i16_pairs(__m256i x) {
    return _mm256_madd_epi16(x, _mm256_set1_epi16(1));
}

// sum over pairs of u * s for u8 lanes u and i8 lanes s, as 8 int32 lanes; exact when |u0*s0 + u1*s1| fits
// int16 (vpmaddubsw saturates).
inline __m256i dot_u8_i8(__m256i u, __m256i s) {
    return sum_i16_pairs(_mm256_maddubs_epi16(u, s));
}

// sum over pairs of x * y for signed i8 lanes (x may be -128, y must not): |x| times y with x's sign.
inline __m256i dot_i8_i8(__m256i x, __m256i y) {
    return dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// Weight rows are short (a few hundred bytes) and a tile reads RM of them side by side, which the hardware
// prefetchers follow poorly: without help a matrix streamed from memory reaches a third of the bandwidth.
// Each tile therefore prefetches, for every block it reads, the same block kPrefetchRows rows further on.
constexpr int kPrefetchRows = 16;
inline void prefetch_rows_ahead(const void* block, size_t row_stride) {
    _mm_prefetch(static_cast<const char*>(block) + kPrefetchRows * row_stride, _MM_HINT_T0);
}

// One-row tiles (matrix x vector) read a single sequential stream, which the hardware prefetchers follow
// on their own; kPrefetchRows rows ahead is then far enough to evict what it fetched before use (Q4_K from
// DRAM, one thread: 12.7 GB/s, against 15.5 without software prefetch). Fetching every cache line of the
// block one row ahead (1-3 KB) instead covers the page boundaries where the hardware stream restarts:
// 18-19 GB/s for Q4_K, 21-23 for Q6_K (tests/cpp/bench_kernels, k = 2048 and 5632).
template <size_t kBytes>
inline void prefetch_next_row(const void* block, size_t row_stride) {
    const char* p = static_cast<const char*>(block) + row_stride;
    for (size_t o = 0; o < kBytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// ---- the gemm driver ----
//
// K::tile<RM, RN>(nb, a, lda, b, ldb, c, ldc) computes c[j*ldc + i] for i < RM, j < RN over nb blocks of
// K::kBlock elements; K::kRM, K::kRN is its main tile. Smaller tiles cover the edges.

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

// Rows per tile when there are fewer tokens than K::kRN (decode: one token, or two with Int8x2): K::kRMVec
// where a kernel sets it, else K::kRM. Matrix x vector streams the weights from memory once, and one row at a
// time is a single sequential stream the hardware prefetchers follow at full speed, where 4 rows side by side
// are 4 short interleaved streams: on Zen3 decode of SmolLM2 Q8_0 went from 53 to 70-75 tok/s (1 thread), the
// 1.1B Q4_K_M from ~7 to ~10. The nibble types keep 4 rows (2 row pairs): one pair was ~5% slower.
template <class K>
constexpr int rows_per_vec_tile() {
    if constexpr (requires { K::kRMVec; })
        return K::kRMVec;
    else
        return K::kRM;
}

template <class K>
void gemm(int64_t k, const void* va, size_t lda, const void* vb, size_t ldb, float* c, int64_t ldc, int64_t m,
          int64_t n) {
    const uint8_t* a = static_cast<const uint8_t*>(va);
    const uint8_t* b = static_cast<const uint8_t*>(vb);
    const int64_t nb = k / K::kBlock;
    constexpr int RMV = rows_per_vec_tile<K>();
    if (RMV != K::kRM && n < K::kRN) {
        for (int64_t i = 0; i < m; i += RMV) {
            const int rm = int(m - i < RMV ? m - i : RMV);
            tile_at_most<K, RMV, K::kRN>(rm, int(n), nb, a + size_t(i) * lda, lda, b, ldb, c + i, ldc);
        }
        return;
    }
    for (int64_t i = 0; i < m; i += K::kRM) {
        const int rm = int(m - i < K::kRM ? m - i : K::kRM);
        for (int64_t j = 0; j < n; j += K::kRN) {
            const int rn = int(n - j < K::kRN ? n - j : K::kRN);
            tile_at_most<K, K::kRM, K::kRN>(rm, rn, nb, a + size_t(i) * lda, lda, b + size_t(j) * ldb, ldb,
                                            c + j * ldc + i, ldc);
        }
    }
}

// ---- k-quant super-blocks against Q8_K (format/kquants.h has the math) ----
//
// A super-block of 256 is eight units of 32 elements. K (one per type) provides
//   using X = the block type; kRM, kRN, kRMVec; kMins, kBsumOffset;
//   prepare(x, row): the per super-block row state, two int16 vectors:
//     row.scales: lane u of the low 128-bit half is the scale of unit u's first 16 elements, lane u of the
//       high half that of its last 16 (Q4_K/Q5_K: [s0..s7 | s0..s7]; 16-element sub-blocks: [s0, s2, ..,
//       s14 | s1, s3, .., s15]), so one in-lane vpshufb broadcasts the scales of a unit (ggml's
//       get_scale_shuffle_k4) instead of 8 broadcasts per row;
//     row.bsum_w: 16 weights for Q8_K's 16 bsums (sums of 16 activations): with kMins the mins (the 8 min
//       sums are vpmaddwd(bsum_w, bsums)), with kBsumOffset offset*scale, where the quants are stored as
//       value + offset: sum sc*(q - offset)*y = sum sc*q*y - vpmaddwd(offset*sc, bsums), one vpmaddwd per
//       super-block instead of a vpmaddubsw and a subtraction per unit (the bsums are the exact sums of the
//       qs, as quantize_row_q8_K writes them);
//   quants<u>(x): the unit's 32 unsigned quants (as stored) in element order; u is a constant, so the
//     compiler shares the loads and shifts between the units that come from the same bytes.
// Per (row i, token j): sumi = sum_u vpmaddwd(scale_u, vpmaddubsw(q_u, y_u)) (- vpmaddwd(bsum_w, bsums)),
// exact in int32; then acc += (d_i*dy_j) * float(sumi) and, with mins, acc -= (dmin_i*dy_j) *
// float(vpmaddwd(bsum_w, bsums)); the result is hsum(acc). d_i*dy_j is one float multiply however it is
// formed, so every tile shape computes the same numbers.

// vpshufb control that copies int16 lane u of each 128-bit half to all 8 lanes of that half.
inline __m256i unit_scale_shuffle(int u) {
    return _mm256_set1_epi16(int16_t(0x0100 + 0x0202 * u));
}

// Calls f.template operator()<U>() for U = 0 .. N-1, in order, with U a constant expression.
template <int N, class F>
inline void for_units(F&& f) {
    [&]<int... U>(std::integer_sequence<int, U...>) {
        (f.template operator()<U>(), ...);
    }
    (std::make_integer_sequence<int, N>{});
}

// ---- K-quant dequantization pieces shared by q2_K..q6_K.cpp ----

// The 32 int8 lanes of q as four vectors of 8 floats, in lane order.
inline void i8x32_to_ps(__m256i q, __m256 f[4]) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

// get_scale_min_k4 for all eight sub-blocks at once: bytes 0..7 = scales, bytes 8..15 = mins.
inline __m128i scales_mins_k4(const uint8_t* scales) {
    constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t utmp[4];
    __builtin_memcpy(utmp, scales, 12);
    utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = utmp[1] & kmask1;
    utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
    utmp[2] = uaux;
    utmp[0] &= kmask1;
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(utmp));
}

// Q4_K / Q5_K: y[0..31] = dl*q - ml
inline void store_32(__m256i q, float dl, float ml, float* y) {
    __m256 f[4];
    i8x32_to_ps(q, f);
    const __m256 d = _mm256_set1_ps(dl), m = _mm256_set1_ps(ml);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d, f[k]), m));
}

// get_scale_min_k4 for all eight sub-blocks, in the integer registers (they are idle while the vector
// units do the dot products): 16 bytes sc0..3, m0..3, sc4..7, m4..7 from the 12 packed bytes q:
//   sc[j], m[j] for j < 4:  q[j] & 63,                             q[j+4] & 63
//   sc[j+4], m[j+4]:        (q[j+8] & 15) | (q[j] >> 6) << 4,      (q[j+8] >> 4) | (q[j+4] >> 6) << 4
// Byte-wise shifts are 64-bit shifts masked to the bits that stay within their byte.
inline __m128i scales_mins_k4_packed(const uint8_t* q) {
    uint64_t a;
    uint32_t b;
    __builtin_memcpy(&a, q, 8);
    __builtin_memcpy(&b, q + 8, 4);
    const uint64_t lo = a & 0x3f3f3f3f3f3f3f3full;
    const uint64_t hi =
        ((a >> 2) & 0x3030303030303030ull) | (b & 0x0f0f0f0fu) | (uint64_t((b >> 4) & 0x0f0f0f0fu) << 32);
    return _mm_set_epi64x(int64_t(hi), int64_t(lo));
}

// Q4_K's and Q5_K's per-block KQuantDot row state (they share the 12-byte scale/min packing): the eight
// scales as int16 twice over, and each min twice (paired with bsums 2u and 2u+1).
struct ScalesMinsK4 {
    __m256i scales, bsum_w;
};

inline ScalesMinsK4 scales_mins_k4_row(const uint8_t* packed) {
    const __m256i sm = _mm256_broadcastsi128_si256(scales_mins_k4_packed(packed));
    constexpr char z = -1;  // vpshufb: zero byte
    ScalesMinsK4 row;
    // [s0..s7 | s0..s7] as int16
    row.scales = _mm256_shuffle_epi8(sm, _mm256_setr_epi8(0, z, 1, z, 2, z, 3, z, 8, z, 9, z, 10, z, 11, z, 0,
                                                          z, 1, z, 2, z, 3, z, 8, z, 9, z, 10, z, 11, z));
    // m0 m0 m1 m1 .. m7 m7 as int16: unit u's min times bsums 2u and 2u+1
    row.bsum_w =
        _mm256_shuffle_epi8(sm, _mm256_setr_epi8(4, z, 4, z, 5, z, 5, z, 6, z, 6, z, 7, z, 7, z, 12, z, 12, z,
                                                 13, z, 13, z, 14, z, 14, z, 15, z, 15, z));
    return row;
}

template <class K>
struct KQuantDot {
    using X = typename K::X;
    static constexpr int64_t kBlock = 256;
    static constexpr int kRM = K::kRM, kRN = K::kRN, kRMVec = K::kRMVec;

    template <int RM, int RN>
    static void tile(int64_t nb, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        struct Y {
            float d;
            int8_t qs[256];
            int16_t bsums[16];
        };
        static_assert(sizeof(Y) == 292, "Q8_K layout");
        __m256 acc[RM][RN];
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();
        for (int64_t l = 0; l < nb; ++l) {
            const X* x[RM];
            typename K::Row row[RM];
            for (int i = 0; i < RM; ++i) {
                x[i] = reinterpret_cast<const X*>(a + size_t(i) * lda) + l;
                if constexpr (RM == 1)
                    prefetch_next_row<sizeof(X)>(x[i], lda);
                else
                    prefetch_rows_ahead(x[i], lda);
                K::prepare(*x[i], row[i]);
            }
            const Y* y[RN];
            for (int j = 0; j < RN; ++j) y[j] = reinterpret_cast<const Y*>(b + size_t(j) * ldb) + l;
            __m256i sumi[RM][RN];
            for (int i = 0; i < RM; ++i)
                for (int j = 0; j < RN; ++j) sumi[i][j] = _mm256_setzero_si256();
            for_units<8>([&]<int U>() {
                __m256i q[RM], sc[RM];
                for (int i = 0; i < RM; ++i) {
                    q[i] = K::template quants<U>(*x[i]);
                    sc[i] = _mm256_shuffle_epi8(row[i].scales, unit_scale_shuffle(U));
                }
                for (int j = 0; j < RN; ++j) {
                    const __m256i yq = load_256(y[j]->qs + 32 * U);
                    for (int i = 0; i < RM; ++i)
                        sumi[i][j] = _mm256_add_epi32(
                            sumi[i][j], _mm256_madd_epi16(sc[i], _mm256_maddubs_epi16(q[i], yq)));
                }
            });
            // [d, dmin] of each row as floats: one vcvtph2ps of the adjacent fp16 pair (d alone without mins)
            __m128 dx[RM];
            for (int i = 0; i < RM; ++i) {
                uint32_t h = x[i]->d;
                if constexpr (K::kMins) {
                    static_assert(offsetof(X, dmin) == offsetof(X, d) + 2, "d, dmin adjacent");
                    __builtin_memcpy(&h, &x[i]->d, 4);
                }
                dx[i] = _mm_cvtph_ps(_mm_cvtsi32_si128(int(h)));
            }
            for (int j = 0; j < RN; ++j) {
                const __m256i bsums = load_256(y[j]->bsums);
                const __m128 dy = _mm_set1_ps(y[j]->d);
                for (int i = 0; i < RM; ++i) {
                    const __m256i w = _mm256_madd_epi16(row[i].bsum_w, bsums);
                    if constexpr (K::kBsumOffset) sumi[i][j] = _mm256_sub_epi32(sumi[i][j], w);
                    const __m128 dd = _mm_mul_ps(dx[i], dy);  // [d*dy, dmin*dy]
                    acc[i][j] =
                        _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sumi[i][j]), acc[i][j]);
                    if constexpr (K::kMins)
                        acc[i][j] = _mm256_fnmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)),
                                                     _mm256_cvtepi32_ps(w), acc[i][j]);
                }
            }
        }
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) c[j * ldc + i] = hsum(acc[i][j]);
    }
};

template <class K>
float vec_dot(int64_t k, const void* x, const void* y) {
    float out;
    K::template tile<1, 1>(k / K::kBlock, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y),
                           0, &out, 1);
    return out;
}

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
