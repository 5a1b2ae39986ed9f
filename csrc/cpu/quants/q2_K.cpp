// Fast kernels of Q2_K (format/kquants.h): y = d*(sc&15)*q - dmin*(sc>>4) per 16-element sub-block.
//
// Per 128-element half, byte l of qs holds elements l, l+32, l+64, l+96 in its four 2-bit fields, so one
// 32-byte load, shifted by 2t and masked, gives the 32 elements of field t in order (ggml-quants.c
// dequantize_row_q2_K's loop, vectorized). Scale and min products are formed first, as in the reference.
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

void dequantize_row_q2_K(const void* vx, float* y, int64_t n) {
    const block_q2_K* x = static_cast<const block_q2_K*>(vx);
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const block_q2_K& b = x[i];
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b.d)), dmin = _mm256_set1_ps(_cvtsh_ss(b.dmin));
        // dl[s] = d * (scales[s] & 15), ml[s] = dmin * (scales[s] >> 4) for the 16 sub-blocks.
        alignas(32) float dl[16], ml[16];
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
        const __m128i s = _mm_and_si128(sc, m4), m = _mm_and_si128(_mm_srli_epi16(sc, 4), m4);
        _mm256_store_ps(dl + 0, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(s))));
        _mm256_store_ps(dl + 8,
                        _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(s, 8)))));
        _mm256_store_ps(ml + 0, _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m))));
        _mm256_store_ps(ml + 8,
                        _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(m, 8)))));
        for (int h = 0; h < 2; ++h) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
            for (int t = 0; t < 4; ++t, y += 32) {
                __m256 f[4];
                i8x32_to_ps(_mm256_and_si256(_mm256_srli_epi16(q, 2 * t), m3), f);
                const int s0 = 8 * h + 2 * t;  // first 16 lanes: sub-block s0, last 16: s0 + 1
                for (int k = 0; k < 4; ++k) {
                    const int sb = s0 + k / 2;
                    const __m256 v = _mm256_mul_ps(_mm256_set1_ps(dl[sb]), f[k]);
                    _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(v, _mm256_set1_ps(ml[sb])));
                }
            }
        }
    }
}

// ---- dot product with Q8_K (avx2_util.h KQuantDot): unit u = 2-bit field t = u%4 of half h = u/4;
// scales (low nibbles) of the sub-blocks of 16 are 2u and 2u+1; the 16 mins (high nibbles) pair with bsums
// ----
struct KQ2_K {
    using X = block_q2_K;
    static constexpr int kRM = 2, kRN = 4, kRMVec = 1;
    static constexpr bool kMins = true, kBsumOffset = false;
    struct Row {
        __m256i scales, bsum_w;
    };
    static void prepare(const X& x, Row& row) {
        const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales));
        const __m128i m4 = _mm_set1_epi8(0x0F);
        row.bsum_w = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        // [s0, s2, .., s14 | s1, s3, .., s15]: unit u's two sub-blocks sit in lane u of each half
        row.scales = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(
            _mm_and_si128(sm, m4), _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
    }
    template <int U>
    static __m256i quants(const X& x) {
        const __m256i v = _mm256_srli_epi16(load_256(x.qs + 32 * (U / 4)), 2 * (U % 4));
        return _mm256_and_si256(v, _mm256_set1_epi8(3));
    }
};
using DotQ2_K = KQuantDot<KQ2_K>;

const kernels::CpuKernels kQ2_K = {
    .dequantize_row = dequantize_row_q2_K, .vec_dot = vec_dot<DotQ2_K>, .gemm = gemm<DotQ2_K>};
const kernels::Registrar q2_K_registrar(Isa::Avx2, TypeId::Q2_K, kQ2_K);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
