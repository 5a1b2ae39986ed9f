// Fast kernels of Q5_K (format/kquants.h): y = d*sc*q - dmin*m per 32-element sub-block, q = 5 bits.
//
// As Q4_K (one 32-byte load of qs per 64-element chunk: low nibbles are sub-block 2c, high nibbles 2c+1),
// plus the fifth bit of element e, bit e/32 of qh[e%32]: one 32-byte load of qh shifted right by the
// sub-block index (ggml_vec_dot_q5_K_q8_K).
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

void dequantize_row_q5_K(const void* vx, float* y, int64_t n) {
    const block_q5_K* x = static_cast<const block_q5_K*>(vx);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const block_q5_K& b = x[i];
        const __m128i sm = scales_mins_k4(b.scales);
        alignas(32) float dl[8], ml[8];  // d * scale and dmin * min of each sub-block
        _mm256_store_ps(
            dl, _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.d)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm))));
        _mm256_store_ps(ml, _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.dmin)),
                                          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)))));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
        for (int c = 0; c < 4; ++c, y += 64) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
            // bit s of each qh byte -> 16
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m1), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), m1), 4);
            store_32(_mm256_or_si256(_mm256_and_si256(q, m4), h0), dl[2 * c], ml[2 * c], y);
            store_32(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1), dl[2 * c + 1],
                     ml[2 * c + 1], y + 32);
        }
    }
}

// ---- dot product with Q8_K (avx2_util.h KQuantDot): as Q4_K, plus bit u of qh[l] as the fifth bit ----

struct KQ5_K {
    using X = block_q5_K;
    static constexpr int kRM = 2, kRN = 4, kRMVec = 1;
    static constexpr bool kMins = true, kBsumOffset = false;
    using Row = ScalesMinsK4;
    static void prepare(const X& x, Row& row) { row = scales_mins_k4_row(x.scales); }
    template <int U>
    static __m256i quants(const X& x) {
        const __m256i v = load_256(x.qs + 32 * (U / 2));
        const __m256i lo = _mm256_and_si256(U % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
        // bit U of each qh byte to bit 4 (16-bit shifts by at most 4 keep each byte's bits in the byte)
        __m256i h = load_256(x.qh);
        if constexpr (U < 4) h = _mm256_slli_epi16(h, 4 - U);
        if constexpr (U > 4) h = _mm256_srli_epi16(h, U - 4);
        return _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    }
};
using DotQ5_K = KQuantDot<KQ5_K>;

const kernels::CpuKernels kQ5_K = {
    .dequantize_row = dequantize_row_q5_K, .vec_dot = vec_dot<DotQ5_K>, .gemm = gemm<DotQ5_K>};
const kernels::Registrar q5_K_registrar(Isa::Avx2, TypeId::Q5_K, kQ5_K);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
