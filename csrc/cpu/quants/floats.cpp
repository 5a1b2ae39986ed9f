// Fast kernels of the unquantized element types F32, F16 and BF16 (format/floats.h).
//
// Widening is exact, so the dequantizers match the reference bit for bit. F16C's vcvtph2ps sets the quiet bit
// of a signalling NaN; the reference (and numpy) keep the payload as is, so that bit is cleared again.
#include "format/floats.h"

#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

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

// ---- activation quantizers: quantize_row_f16_ref / quantize_row_bf16_ref, bit for bit ----

// vcvtps2ph with round-to-nearest-even is fp32_to_fp16: overflow to inf, subnormals rounded, NaN quieted with
// its top payload bits kept.
void quantize_row_f16(const float* x, void* vy, int64_t n) {
    uint16_t* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

// ggml_compute_fp32_to_bf16: NaN -> (u >> 16) | 64, else (u + 0x7fff + ((u >> 16) & 1)) >> 16.
__m128i fp32x8_to_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);  // 16-bit results in 32-bit lanes
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

void quantize_row_bf16(const float* x, void* vy, int64_t n) {
    uint16_t* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), fp32x8_to_bf16(_mm256_loadu_ps(x + i)));
    if (i < n) {  // the last 1..7 through a zero-padded copy
        float tail[8] = {};
        __builtin_memcpy(tail, x + i, size_t(n - i) * sizeof(float));
        uint16_t out[8];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), fp32x8_to_bf16(_mm256_loadu_ps(tail)));
        __builtin_memcpy(y + i, out, size_t(n - i) * sizeof(uint16_t));
    }
}

// ---- dot products of two rows of the same float type (avx2_util.h gemm) ----
//
// Per (row i, token j) one 8-lane accumulator: acc += x[8 at a time] * y with FMA (F16 and BF16 products are
// exact in float, so only the sums round), the last 1..7 elements through zero-padded copies, then hsum. The
// reference accumulates in double, so this differs from it by float rounding of the running sums.
template <typename T, __m256 (*Load8)(const void*), int kSize>
struct DotFloat {
    static constexpr int64_t kBlock = 1;
    static constexpr int kRM = 4, kRN = 2;

    template <int RM, int RN>
    static void tile(int64_t k, const uint8_t* a, size_t lda, const uint8_t* b, size_t ldb, float* c,
                     int64_t ldc) {
        __m256 acc[RM][RN];
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();
        auto step = [&](const uint8_t* const(&xs)[RM], const uint8_t* const(&ys)[RN]) {
            __m256 xv[RM];
            for (int i = 0; i < RM; ++i) xv[i] = Load8(xs[i]);
            for (int j = 0; j < RN; ++j) {
                const __m256 yv = Load8(ys[j]);
                for (int i = 0; i < RM; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], yv, acc[i][j]);
            }
        };
        int64_t e = 0;
        for (; e + 8 <= k; e += 8) {
            const uint8_t* xs[RM];
            const uint8_t* ys[RN];
            for (int i = 0; i < RM; ++i) {
                xs[i] = a + size_t(i) * lda + size_t(e) * kSize;
                prefetch_rows_ahead(xs[i], lda);
            }
            for (int j = 0; j < RN; ++j) ys[j] = b + size_t(j) * ldb + size_t(e) * kSize;
            step(xs, ys);
        }
        if (e < k) {
            alignas(32) uint8_t xt[RM][8 * kSize] = {}, yt[RN][8 * kSize] = {};
            const uint8_t* xs[RM];
            const uint8_t* ys[RN];
            for (int i = 0; i < RM; ++i) {
                __builtin_memcpy(xt[i], a + size_t(i) * lda + size_t(e) * kSize, size_t(k - e) * kSize);
                xs[i] = xt[i];
            }
            for (int j = 0; j < RN; ++j) {
                __builtin_memcpy(yt[j], b + size_t(j) * ldb + size_t(e) * kSize, size_t(k - e) * kSize);
                ys[j] = yt[j];
            }
            step(xs, ys);
        }
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) c[j * ldc + i] = hsum(acc[i][j]);
    }
};

__m256 load8_f32(const void* p) {
    return _mm256_loadu_ps(static_cast<const float*>(p));
}
__m256 load8_f16(const void* p) {  // no NaN payload fix-up needed: a product with NaN is NaN anyway
    return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p)));
}
__m256 load8_bf16(const void* p) {
    const __m128i b = _mm_loadu_si128(static_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
}

using DotF32 = DotFloat<float, load8_f32, 4>;
using DotF16 = DotFloat<uint16_t, load8_f16, 2>;
using DotBF16 = DotFloat<uint16_t, load8_bf16, 2>;

const kernels::CpuKernels kF32 = {.vec_dot = vec_dot<DotF32>, .gemm = gemm<DotF32>};
const kernels::CpuKernels kF16 = {.dequantize_row = dequantize_row_f16,
                                  .quantize_row = quantize_row_f16,
                                  .vec_dot = vec_dot<DotF16>,
                                  .gemm = gemm<DotF16>};
const kernels::CpuKernels kBF16 = {.dequantize_row = dequantize_row_bf16,
                                   .quantize_row = quantize_row_bf16,
                                   .vec_dot = vec_dot<DotBF16>,
                                   .gemm = gemm<DotBF16>};
const kernels::Registrar f32_registrar(Isa::Avx2, TypeId::F32, kF32);
const kernels::Registrar f16_registrar(Isa::Avx2, TypeId::F16, kF16);
const kernels::Registrar bf16_registrar(Isa::Avx2, TypeId::BF16, kBF16);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
