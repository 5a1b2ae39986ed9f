// Fast kernels of the unquantized element types F16 and BF16 (format/floats.h).
//
// Widening is exact, so these match the reference bit for bit. F16C's vcvtph2ps sets the quiet bit of a
// signalling NaN; the reference (and numpy) keep the payload as is, so that bit is cleared again.
#include "format/floats.h"

#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

namespace qrt::avx2 {
namespace {

// 8 halves -> 8 floats: vcvtph2ps (ggml_cpu_fp16_to_fp32's F16C branch), then the quiet bit (bit 22)
// cleared again in the lanes that held a signalling NaN (|h| in (0x7c00, 0x7e00)).
__m256 fp16x8_to_ps(__m128i h) {
    const __m128i abs = _mm_and_si128(h, _mm_set1_epi16(0x7fff));
    const __m128i snan = _mm_and_si128(_mm_cmpgt_epi16(abs, _mm_set1_epi16(0x7c00)),
                                       _mm_cmpgt_epi16(_mm_set1_epi16(0x7e00), abs));
    const __m256i quiet = _mm256_and_si256(_mm256_cvtepi16_epi32(snan), _mm256_set1_epi32(0x00400000));
    return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(_mm256_cvtph_ps(h)), quiet));
}

void dequantize_row_f16(const void* vx, float* y, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 32; k += 8)
            _mm256_storeu_ps(y + i + k,
                             fp16x8_to_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + k))));
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, fp16x8_to_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    if (i < n) {  // the last 1..7 halves, through a zero-padded copy
        uint16_t tail[8] = {};
        __builtin_memcpy(tail, x + i, size_t(n - i) * sizeof(uint16_t));
        float out[8];
        _mm256_storeu_ps(out, fp16x8_to_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tail))));
        __builtin_memcpy(y + i, out, size_t(n - i) * sizeof(float));
    }
}

// bfloat16 is the top half of a float: widen to 32 bits and shift left by 16 (ggml_cpu_bf16_to_fp32).
void dequantize_row_bf16(const void* vx, float* y, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 32; k += 8) {
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + k));
            const __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16);
            _mm256_storeu_ps(y + i + k, _mm256_castsi256_ps(u));
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16)));
    }
    for (; i < n; ++i) {
        const uint32_t u = uint32_t(x[i]) << 16;
        __builtin_memcpy(y + i, &u, sizeof u);
    }
}

const kernels::CpuKernels kF16 = {.dequantize_row = dequantize_row_f16};
const kernels::CpuKernels kBF16 = {.dequantize_row = dequantize_row_bf16};
const kernels::Registrar f16_registrar(Isa::Avx2, TypeId::F16, kF16);
const kernels::Registrar bf16_registrar(Isa::Avx2, TypeId::BF16, kBF16);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
