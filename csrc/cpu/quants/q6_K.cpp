// Fast kernels of Q6_K (format/kquants.h): y = d*sc*(q-32) per 16-element sub-block, q = 6 bits.
//
// Per 128-element half (ggml-quants.c dequantize_row_q6_K): bytes l of ql[0..31] and ql[32..63] hold
// elements l, l+32 in their low nibbles and l+64, l+96 in their high nibbles; byte l of qh[0..31] holds
// the top 2 bits of elements l, l+32, l+64, l+96 in fields 0..3. Three 32-byte loads give all 128.
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

// y[0..31] = dl[0]*q for lanes 0..15, dl[1]*q for lanes 16..31.
void store_32(__m256i q, const float* dl, float* y) {
    __m256 f[4];
    i8x32_to_ps(q, f);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_set1_ps(dl[k / 2]), f[k]));
}

void dequantize_row_q6_K(const void* vx, float* y, int64_t n) {
    const block_q6_K* x = static_cast<const block_q6_K*>(vx);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), bias = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const block_q6_K& b = x[i];
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b.d));
        alignas(32) float dl[16];  // d * scale of each 16-element sub-block
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
        _mm256_store_ps(dl + 0, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_store_ps(dl + 8,
                        _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        for (int h = 0; h < 2; ++h, y += 128) {
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
            // q - 32 with q = low nibble | field t of qh << 4; the field is moved to bits 4..5
            const __m256i q0 =
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            const __m256i q1 =
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            const __m256i q2 =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            const float* s = dl + 8 * h;
            store_32(_mm256_sub_epi8(q0, bias), s + 0, y + 0);
            store_32(_mm256_sub_epi8(q1, bias), s + 2, y + 32);
            store_32(_mm256_sub_epi8(q2, bias), s + 4, y + 64);
            store_32(_mm256_sub_epi8(q3, bias), s + 6, y + 96);
        }
    }
}

// ---- dot product with Q8_K (avx2_util.h KQuantDot): unit u = quarter t = u%4 of half h = u/4; stored
// q = ql nibble | qh 2 bits << 4 = value + 32 (the 32 comes off through the bsums); scales of the
// sub-blocks of 16 are 2u and 2u+1 ----
struct KQ6_K {
    using X = block_q6_K;
    static constexpr int kRM = 2, kRN = 4, kRMVec = 1;
    static constexpr bool kMins = false, kBsumOffset = true;
    struct Row {
        __m256i scales, bsum_w;
    };
    static void prepare(const X& x, Row& row) {
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales));
        // [s0, s2, .., s14 | s1, s3, .., s15]: unit u's two sub-blocks sit in lane u of each half
        row.scales = _mm256_cvtepi8_epi16(
            _mm_shuffle_epi8(sc, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
        row.bsum_w = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 5);  // 32 * s (|32 s| <= 4096)
    }
    template <int U>
    static __m256i quants(const X& x) {
        constexpr int h = U / 4, t = U % 4;
        const __m256i ql = load_256(x.ql + 64 * h + 32 * (t & 1));
        const __m256i lo = _mm256_and_si256(t < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0F));
        // field t of qh (bits 2t, 2t+1) to bits 4..5; the 16-bit shifts move bits within each byte there
        __m256i hi = load_256(x.qh + 32 * h);
        if constexpr (t < 2) hi = _mm256_slli_epi16(hi, 4 - 2 * t);
        if constexpr (t == 3) hi = _mm256_srli_epi16(hi, 2);
        return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    }
};
using DotQ6_K = KQuantDot<KQ6_K>;

const kernels::CpuKernels kQ6_K = {
    .dequantize_row = dequantize_row_q6_K, .vec_dot = vec_dot<DotQ6_K>, .gemm = gemm<DotQ6_K>};
const kernels::Registrar q6_K_registrar(Isa::Avx2, TypeId::Q6_K, kQ6_K);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
