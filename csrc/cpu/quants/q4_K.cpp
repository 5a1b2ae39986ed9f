// Fast kernels of Q4_K (format/kquants.h): y = d*sc*q - dmin*m per 32-element sub-block.
//
// Each 64-element chunk is one 32-byte load of qs: low nibbles are sub-block 2c, high nibbles 2c+1. The
// eight 6-bit scales and mins are unpacked with ggml's kmask shuffle (ggml_vec_dot_q4_K_q8_K) and the
// products d*sc, dmin*m formed first, as in the reference.
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

void dequantize_row_q4_K(const void* vx, float* y, int64_t n) {
    const block_q4_K* x = static_cast<const block_q4_K*>(vx);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const block_q4_K& b = x[i];
        const __m128i sm = scales_mins_k4(b.scales);
        alignas(32) float dl[8], ml[8];  // d * scale and dmin * min of each sub-block
        _mm256_store_ps(
            dl, _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.d)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm))));
        _mm256_store_ps(ml, _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.dmin)),
                                          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)))));
        for (int c = 0; c < 4; ++c, y += 64) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
            store_32(_mm256_and_si256(q, m4), dl[2 * c], ml[2 * c], y);
            store_32(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), dl[2 * c + 1], ml[2 * c + 1], y + 32);
        }
    }
}

// ---- dot product with Q8_K (avx2_util.h KQuantDot): unit u = sub-block u of 32, scale sc[u], min m[u] ----

struct KQ4_K {
    using X = block_q4_K;
    static constexpr int kRM = 2, kRN = 4, kRMVec = 1;
    static constexpr bool kMins = true, kBsumOffset = false;
    using Row = ScalesMinsK4;
    static void prepare(const X& x, Row& row) { row = scales_mins_k4_row(x.scales); }
    template <int U>
    static __m256i quants(const X& x) {
        const __m256i v = load_256(x.qs + 32 * (U / 2));
        return _mm256_and_si256(U % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0F));
    }
};
using DotQ4_K = KQuantDot<KQ4_K>;

const kernels::CpuKernels kQ4_K = {
    .dequantize_row = dequantize_row_q4_K, .vec_dot = vec_dot<DotQ4_K>, .gemm = gemm<DotQ4_K>};
const kernels::Registrar q4_K_registrar(Isa::Avx2, TypeId::Q4_K, kQ4_K);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
