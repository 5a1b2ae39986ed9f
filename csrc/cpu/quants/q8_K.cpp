// Fast kernels of Q8_K (format/kquants.h), the activation side of every k-quant dot product: y = d * qs,
// d in fp32, bsums[j] = sum of qs[16j..16j+15].
//
// quantize_row_q8_K is quantize_row_q8_K_ref bit for bit: max = the value of largest magnitude (the first
// one on ties, NaNs never), iscale = -127/max, qs = min(127, nearest_int(iscale * x)) where nearest_int
// rounds half to even like vcvtps2dq in the default rounding mode, d = 1/iscale.
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

void quantize_row_q8_K(const float* x, void* vy, int64_t n) {
    block_q8_K* y = static_cast<block_q8_K*>(vy);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8)
            amax =
                _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask), amax);  // NaN lanes: kept amax
        __m128 m = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const __m256 vmax = _mm256_set1_ps(_mm_cvtss_f32(m));
        if (_mm_cvtss_f32(m) == 0.0f) {
            __builtin_memset(&y[b], 0, sizeof(block_q8_K));
            continue;
        }
        float max = 0.0f;  // the first value whose magnitude is amax, with its sign
        for (int k = 0; k < QK_K; k += 8) {
            const int mask = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask), vmax, _CMP_EQ_OQ));
            if (mask) {
                max = x[k + __builtin_ctz(unsigned(mask))];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i q[4];
            for (int v = 0; v < 4; ++v)
                q[v] = _mm256_min_epi32(
                    lim, _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + k + 8 * v))));
            // bsums of the two 16-value groups: 8 + 8 int32 lanes each
            for (int g = 0; g < 2; ++g) {
                const __m256i s = _mm256_add_epi32(q[2 * g], q[2 * g + 1]);
                __m128i h = _mm_add_epi32(_mm256_extracti128_si256(s, 1), _mm256_castsi256_si128(s));
                h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
                h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
                y[b].bsums[k / 16 + g] = int16_t(_mm_cvtsi128_si32(h));
            }
            const __m256i p8 =
                _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + k),
                                _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        }
        y[b].d = 1.0f / iscale;
    }
}

// y = d * q (the reference's `b.d * b.qs[j]`), widening 8 at a time.
void dequantize_row_q8_K(const void* vx, float* y, int64_t n) {
    const block_q8_K* x = static_cast<const block_q8_K*>(vx);
    for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
        const __m256 d = _mm256_set1_ps(x[b].d);
        for (int k = 0; k < QK_K; k += 8) {
            const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].qs + k));
            _mm256_storeu_ps(y + k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
        }
    }
}

const kernels::CpuKernels kQ8_K = {.dequantize_row = dequantize_row_q8_K, .quantize_row = quantize_row_q8_K};
const kernels::Registrar q8_K_registrar(Isa::Avx2, TypeId::Q8_K, kQ8_K);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
