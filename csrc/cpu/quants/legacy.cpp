// Fast kernels of the 32-element legacy blocks Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (format/legacy.h), and the
// quantizers of their activation partners Q8_0 and Q8_1.
//
// Dequantize: each block is unpacked into 32 int8 lanes in element order (low nibbles of qs = elements
// 0..15, high nibbles = 16..31; Q5's fifth bits spread from qh), then widened eight at a time to float and
// scaled with a separate multiply and add, exactly like the reference's `q*d` / `q*d + m`.
// Dot products and gemm: see avx2_util.h; the per-type block math is below.
#include "format/legacy.h"

#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

__m256 load_half(const half_bits& h) {
    return _mm256_set1_ps(_cvtsh_ss(h));
}

__m256 i8x8_to_ps(__m128i q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
}

// y[0..31] = q*d for 32 int8 lanes.
void store_scaled_32(__m256i q, __m256 d, float* y) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(i8x8_to_ps(lo), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8_to_ps(_mm_srli_si128(lo, 8)), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8x8_to_ps(hi), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8x8_to_ps(_mm_srli_si128(hi, 8)), d));
}

// y[0..31] = q*d + m for 32 int8 lanes (a multiply, then an add: never fused).
void store_scaled_offset_32(__m256i q, __m256 d, __m256 m, float* y) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_add_ps(_mm256_mul_ps(i8x8_to_ps(lo), d), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(i8x8_to_ps(_mm_srli_si128(lo, 8)), d), m));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(i8x8_to_ps(hi), d), m));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(i8x8_to_ps(_mm_srli_si128(hi, 8)), d), m));
}

// y = (q - 8) * d
void dequantize_row_q4_0(const void* vx, float* y, int64_t n) {
    const block_q4_0* x = static_cast<const block_q4_0*>(vx);
    for (int64_t i = 0; i < n / QK4_0; ++i, y += QK4_0) {
        const __m256i q = _mm256_sub_epi8(bytes_from_nibbles_32(x[i].qs), _mm256_set1_epi8(8));
        store_scaled_32(q, load_half(x[i].d), y);
    }
}

// y = q*d + m
void dequantize_row_q4_1(const void* vx, float* y, int64_t n) {
    const block_q4_1* x = static_cast<const block_q4_1*>(vx);
    for (int64_t i = 0; i < n / QK4_1; ++i, y += QK4_1)
        store_scaled_offset_32(bytes_from_nibbles_32(x[i].qs), load_half(x[i].d), load_half(x[i].m), y);
}

// y = (q - 16) * d with q = nibble | bit<<4. As in ggml's vec_dot_q5_0_q8_0, q - 16 is the nibble with
// 0xF0 or-ed in where the fifth bit is clear (two's complement of nibble - 16), and the nibble otherwise.
void dequantize_row_q5_0(const void* vx, float* y, int64_t n) {
    const block_q5_0* x = static_cast<const block_q5_0*>(vx);
    for (int64_t i = 0; i < n / QK5_0; ++i, y += QK5_0) {
        const __m256i clear = _mm256_andnot_si256(bytes_from_bits_32(x[i].qh), _mm256_set1_epi8(char(0xF0)));
        store_scaled_32(_mm256_or_si256(bytes_from_nibbles_32(x[i].qs), clear), load_half(x[i].d), y);
    }
}

// y = q*d + m with q = nibble | bit<<4
void dequantize_row_q5_1(const void* vx, float* y, int64_t n) {
    const block_q5_1* x = static_cast<const block_q5_1*>(vx);
    for (int64_t i = 0; i < n / QK5_1; ++i, y += QK5_1) {
        const __m256i high = _mm256_and_si256(bytes_from_bits_32(x[i].qh), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(bytes_from_nibbles_32(x[i].qs), high);
        store_scaled_offset_32(q, load_half(x[i].d), load_half(x[i].m), y);
    }
}

// y = q * d, widening straight from memory.
void dequantize_row_q8_0(const void* vx, float* y, int64_t n) {
    const block_q8_0* x = static_cast<const block_q8_0*>(vx);
    for (int64_t i = 0; i < n / QK8_0; ++i, y += QK8_0) {
        const __m256 d = load_half(x[i].d);
        for (int k = 0; k < QK8_0; k += 8) {
            const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[i].qs + k));
            _mm256_storeu_ps(y + k, _mm256_mul_ps(i8x8_to_ps(q), d));
        }
    }
}

// ---- dot products with the activation blocks (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1) ----
//
// Per block and (row i, token j): the exact integer dot of the 32 quants, as int32 lanes, then
// acc[i][j] += (dx_i * dy_j) * float(lanes) with one FMA; the result is the sum of i's lanes. The scale
// products dx_i * dy_j are formed for all rows at once (lane i of a vector), so every output sees the same
// float operations whatever the tile; Q4_1/Q5_1's min terms m_i * s_j accumulate in lanes of a per-token
// vector the same way and are added at the end.
//
// The 4- and 5-bit types pack two rows per register: lanes 0-15 hold row A's elements 0..15 (low nibbles)
// or 16..31 (high nibbles), lanes 16-31 row B's, against the token's matching 16 bytes broadcast to both
// halves. One vpmaddubsw per half, one add, one vpmaddwd: 4 int32 lanes per row, so cvt + FMA cost half a
// vector per row. Offset types (Q4_0: q-8, Q5_0: q-16) multiply the unsigned quant by y and subtract
// offset * (y0 + y1) per int16 pair; all exact: |q*y| sums stay within 2*31*127*2 < 32767.
// Register budget (16 ymm): the tile's accumulators, the unpacked row pairs, the token's two halves. A 4 x 3
// tile (6 accumulators + 3 min sums) beats 4 x 2 by about 20% in prefill: the per-token work (the token's two
// halves, its scale product, Q4_0/Q5_0's offset sums) is shared by two row pairs either way, the unpacked
// rows by three tokens instead of two.

template <typename X>
const X& block_at(const uint8_t* row, size_t stride, int i, int64_t l) {
    return reinterpret_cast<const X*>(row + size_t(i) * stride)[l];
}

// fp16 values of rows 0..RM-1 (RM <= 8) as floats in lanes 0..RM-1 of a vector.
template <int RM>
__m256 halves_to_ps(const uint16_t (&h)[RM]) {
    uint16_t v[8] = {};
    for (int i = 0; i < RM; ++i) v[i] = h[i];
    return _mm256_cvtph_ps(_mm_set_epi16(short(v[7]), short(v[6]), short(v[5]), short(v[4]), short(v[3]),
                                         short(v[2]), short(v[1]), short(v[0])));
}

template <int RM, int RN>
void zero(__m256 (&acc)[RM][RN]) {
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();
}

// The first 4 bytes of a block: d and m (Q4_1, Q5_1, Q8_1: d and s), or d and two bytes of something else.
uint32_t head_word(const void* block) {
    uint32_t w;
    __builtin_memcpy(&w, block, sizeof w);
    return w;
}

// Low nibbles (elements 0..15) of rows A, B in lo and high nibbles (16..31) in hi, A in lanes 0-15.
template <typename X>
void unpack_pair(const X& a, const X& b, __m256i& lo, __m256i& hi) {
    const __m256i v = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.qs))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs)), 1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    lo = _mm256_and_si256(v, m4);
    hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if constexpr (requires { a.qh; }) {  // Q5: bit e of qh is element e's fifth bit
        // Both words in each 128-bit lane; byte e of lo takes A's byte e/8 (lane 0) or B's (lane 1), hi the
        // same for elements 16..31; then bit e%8 of that byte, as 0x10.
        const __m256i words =
            _mm256_set1_epi64x(int64_t(uint64_t(head_word(a.qh)) | uint64_t(head_word(b.qh)) << 32));
        const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
        const __m256i sel_lo =
            _mm256_setr_epi64x(0, 0x0101010101010101, 0x0404040404040404, 0x0505050505050505);
        const __m256i sel_hi = _mm256_setr_epi64x(0x0202020202020202, 0x0303030303030303, 0x0606060606060606,
                                                  0x0707070707070707);
        const __m256i m5 = _mm256_set1_epi8(0x10);
        const __m256i blo = _mm256_and_si256(_mm256_shuffle_epi8(words, sel_lo), bit);
        const __m256i bhi = _mm256_and_si256(_mm256_shuffle_epi8(words, sel_hi), bit);
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(blo, bit), m5));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(bhi, bit), m5));
    }
}

// Q4_0, Q5_0 against Q8_0 (kOffset 8, 16; no min) and Q4_1, Q5_1 against Q8_1 (kOffset 0; min).
template <typename X, typename Y, int kOffset>
struct DotNibbles {
    static constexpr int64_t kBlock = 32;
    static constexpr int kRM = 4, kRN = 3;
    static constexpr bool kMin = kOffset == 0;

    template <int RM, int RN>
    static void tile(int64_t nb, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        static_assert(RM <= 4, "rows of a tile share one scale vector");
        constexpr int P = (RM + 1) / 2;  // row pairs; an odd last row pairs with itself
        __m256 acc[P][RN], summ[RN];
        for (int i = 0; i < int(sizeof acc / sizeof acc[0]); ++i)
            for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();
        for (int j = 0; j < RN; ++j) summ[j] = _mm256_setzero_ps();
        const __m256i ones = _mm256_set1_epi16(1);
        for (int64_t l = 0; l < nb; ++l) {
            const X* x[RM];
            uint32_t w[4] = {};
            for (int i = 0; i < RM; ++i) {
                x[i] = &block_at<X>(a, lda, i, l);
                prefetch_rows_ahead(x[i], lda);
                w[i] = kMin ? head_word(x[i]) : x[i]->d;  // [d, m] or [d, 0]: no stray bits in the odd lanes
            }
            const __m256 dm = _mm256_cvtph_ps(_mm_set_epi32(int(w[3]), int(w[2]), int(w[1]), int(w[0])));
            __m256i lo[P], hi[P];
            for (int p = 0; p < P; ++p)
                unpack_pair(*x[2 * p], *x[2 * p + 1 < RM ? 2 * p + 1 : 2 * p], lo[p], hi[p]);
            for (int j = 0; j < RN; ++j) {
                const Y& y = block_at<Y>(b, ldb, j, l);
                const uint32_t wy = kMin ? head_word(&y) : y.d;  // [dy, sy] or [dy, 0]
                const __m256 prod =
                    _mm256_mul_ps(dm, _mm256_cvtph_ps(_mm_set1_epi32(int(wy))));  // dx*dy, mx*sy
                if constexpr (kMin) summ[j] = _mm256_add_ps(summ[j], prod);
                const __m256i ylo =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y.qs)));
                const __m256i yhi =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y.qs + 16)));
                __m256i off = _mm256_setzero_si256();
                if constexpr (kOffset != 0)
                    off = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(kOffset), ylo),
                                           _mm256_maddubs_epi16(_mm256_set1_epi8(kOffset), yhi));
                for (int p = 0; p < P; ++p) {
                    __m256i s =
                        _mm256_add_epi16(_mm256_maddubs_epi16(lo[p], ylo), _mm256_maddubs_epi16(hi[p], yhi));
                    if constexpr (kOffset != 0) s = _mm256_sub_epi16(s, off);
                    const int ia = 2 * p, ib = 2 * p + 1 < RM ? 2 * p + 1 : 2 * p;
                    const __m256 d = _mm256_permutevar8x32_ps(
                        prod,
                        _mm256_setr_epi32(2 * ia, 2 * ia, 2 * ia, 2 * ia, 2 * ib, 2 * ib, 2 * ib, 2 * ib));
                    acc[p][j] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_madd_epi16(s, ones)), acc[p][j]);
                }
            }
        }
        for (int j = 0; j < RN; ++j) {
            alignas(32) float m[8];
            _mm256_store_ps(m, summ[j]);
            for (int p = 0; p < P; ++p) {
                c[j * ldc + 2 * p] = hsum4(_mm256_castps256_ps128(acc[p][j])) + (kMin ? m[4 * p + 1] : 0.0f);
                if (2 * p + 1 < RM)
                    c[j * ldc + 2 * p + 1] =
                        hsum4(_mm256_extractf128_ps(acc[p][j], 1)) + (kMin ? m[4 * p + 3] : 0.0f);
            }
        }
    }
};

// Q8_0 against Q8_0: signed x signed through |x| and y with x's sign.
struct DotQ8_0Q8_0 {
    static constexpr int64_t kBlock = 32;
    static constexpr int kRM = 4, kRN = 2, kRMVec = 1;

    template <int RM, int RN>
    static void tile(int64_t nb, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        __m256 acc[RM][RN];
        for (int i = 0; i < int(sizeof acc / sizeof acc[0]); ++i)
            for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();
        for (int64_t l = 0; l < nb; ++l) {
            __m256i aq[RM];
            uint16_t hx[RM];
            for (int i = 0; i < RM; ++i) {
                const block_q8_0& x = block_at<block_q8_0>(a, lda, i, l);
                prefetch_rows_ahead(&x, lda);
                const __m256i q = load_256(x.qs);
                aq[i] = _mm256_sign_epi8(q, q);
                hx[i] = x.d;
            }
            const __m256 dx = halves_to_ps<RM>(hx);
            for (int j = 0; j < RN; ++j) {
                const block_q8_0& y = block_at<block_q8_0>(b, ldb, j, l);
                const __m256i yq = load_256(y.qs);
                alignas(32) float d[8];
                _mm256_store_ps(d, _mm256_mul_ps(dx, _mm256_set1_ps(half_to_float(y.d))));
                for (int i = 0; i < RM; ++i) {
                    const __m256i sy = _mm256_sign_epi8(yq, load_256(block_at<block_q8_0>(a, lda, i, l).qs));
                    const __m256i p = dot_u8_i8(aq[i], sy);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + i), _mm256_cvtepi32_ps(p), acc[i][j]);
                }
            }
        }
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) c[j * ldc + i] = hsum(acc[i][j]);
    }
};

using DotQ4_0 = DotNibbles<block_q4_0, block_q8_0, 8>;
using DotQ5_0 = DotNibbles<block_q5_0, block_q8_0, 16>;
using DotQ4_1 = DotNibbles<block_q4_1, block_q8_1, 0>;
using DotQ5_1 = DotNibbles<block_q5_1, block_q8_1, 0>;

// ---- activation quantizers: quantize_row_q8_0_ref / quantize_row_q8_1_ref, bit for bit ----

// roundf (half away from zero) of integral-range values: truncate, then step away from zero when the
// dropped fraction (exact) is at least one half.
__m256 round_half_away(__m256 v) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
    const __m256 step = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign_bit));
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step));
}

// One 32-value block: d = amax/127 (NaNs ignored, as std::max in the reference), qs = round(x * (1/d)).
// Returns d; writes qs and the int sum of qs.
float quantize_block_q8(const float* x, int8_t* qs, int* sum) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(_mm256_and_ps(v[k], abs_mask), amax);  // a NaN lane keeps amax
    }
    __m128 m = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i i[4];
    for (int k = 0; k < 4; ++k) i[k] = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v[k], vid)));
    const __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    __m128i s = _mm_add_epi32(_mm256_extracti128_si256(s32, 1), _mm256_castsi256_si128(s32));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    *sum = _mm_cvtsi128_si32(s);
    // int32 -> int8 in order: the packs interleave 128-bit lanes, the permute puts them back
    const __m256i p16a = _mm256_packs_epi32(i[0], i[1]), p16b = _mm256_packs_epi32(i[2], i[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs),
                        _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return d;
}

void quantize_row_q8_0(const float* x, void* vy, int64_t n) {
    block_q8_0* y = static_cast<block_q8_0*>(vy);
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        int sum;
        const float d = quantize_block_q8(x + b * QK8_0, y[b].qs, &sum);
        y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    }
}

void quantize_row_q8_1(const float* x, void* vy, int64_t n) {
    block_q8_1* y = static_cast<block_q8_1*>(vy);
    for (int64_t b = 0; b < n / QK8_1; ++b) {
        int sum;
        const float d = quantize_block_q8(x + b * QK8_1, y[b].qs, &sum);
        y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        y[b].s = _cvtss_sh(float(sum) * d, _MM_FROUND_TO_NEAREST_INT);
    }
}

const kernels::CpuKernels kQ4_0 = {
    .dequantize_row = dequantize_row_q4_0, .vec_dot = vec_dot<DotQ4_0>, .gemm = gemm<DotQ4_0>};
const kernels::CpuKernels kQ4_1 = {
    .dequantize_row = dequantize_row_q4_1, .vec_dot = vec_dot<DotQ4_1>, .gemm = gemm<DotQ4_1>};
const kernels::CpuKernels kQ5_0 = {
    .dequantize_row = dequantize_row_q5_0, .vec_dot = vec_dot<DotQ5_0>, .gemm = gemm<DotQ5_0>};
const kernels::CpuKernels kQ5_1 = {
    .dequantize_row = dequantize_row_q5_1, .vec_dot = vec_dot<DotQ5_1>, .gemm = gemm<DotQ5_1>};
const kernels::CpuKernels kQ8_0 = {.dequantize_row = dequantize_row_q8_0,
                                   .quantize_row = quantize_row_q8_0,
                                   .vec_dot = vec_dot<DotQ8_0Q8_0>,
                                   .gemm = gemm<DotQ8_0Q8_0>};
const kernels::CpuKernels kQ8_1 = {.quantize_row = quantize_row_q8_1};
const kernels::Registrar q4_0_registrar(Isa::Avx2, TypeId::Q4_0, kQ4_0);
const kernels::Registrar q4_1_registrar(Isa::Avx2, TypeId::Q4_1, kQ4_1);
const kernels::Registrar q5_0_registrar(Isa::Avx2, TypeId::Q5_0, kQ5_0);
const kernels::Registrar q5_1_registrar(Isa::Avx2, TypeId::Q5_1, kQ5_1);
const kernels::Registrar q8_0_registrar(Isa::Avx2, TypeId::Q8_0, kQ8_0);
const kernels::Registrar q8_1_registrar(Isa::Avx2, TypeId::Q8_1, kQ8_1);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
