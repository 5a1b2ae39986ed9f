// Fast kernels of Q3_K (format/kquants.h): y = d*(sc-32)*q, q = 2 low bits + hmask bit - 4.
//
// qs is laid out as Q2_K's (one 32-byte load per 128-element half, shifted by 2t for field t); the high
// bit of element e is bit e/32 of hmask[e%32], so one 32-byte load of hmask shifted by e/32 serves every
// field. The 16 six-bit scales are unpacked with ggml's kmask shuffle (ggml_vec_dot_q3_K_q8_K).
#include "format/kquants.h"
#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "cpu/quants/avx2_util.h"

namespace qrt::avx2 {
namespace {

// The 16 scales of a block minus their bias 32, as int8: byte i = low 4 bits (scales[i%8] nibble i/8)
// | top 2 bits (field i/4 of scales[8 + i%4]) << 4.
__m128i q3_K_scales(const uint8_t* scales) {
    constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[3], utmp[4];
    __builtin_memcpy(aux, scales, 12);
    utmp[3] = ((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4);
    utmp[2] = ((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4);
    utmp[1] = (aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4);
    utmp[0] = (aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4);
    return _mm_sub_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(utmp)), _mm_set1_epi8(32));
}

void dequantize_row_q3_K(const void* vx, float* y, int64_t n) {
    const block_q3_K* x = static_cast<const block_q3_K*>(vx);
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const block_q3_K& b = x[i];
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b.d));
        alignas(32) float dl[16];  // d * scale of each 16-element sub-block
        const __m128i sc = q3_K_scales(b.scales);
        _mm256_store_ps(dl + 0, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_store_ps(dl + 8,
                        _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
        for (int h = 0; h < 2; ++h) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
            for (int t = 0; t < 4; ++t, y += 32) {
                const __m256i lo2 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * t), m3);
                const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + t), m1);
                // subtract 4 where the high bit is clear
                const __m256i minus = _mm256_andnot_si256(_mm256_slli_epi16(hbit, 2), four);
                __m256 f[4];
                i8x32_to_ps(_mm256_sub_epi8(lo2, minus), f);
                const int s0 = 8 * h + 2 * t;  // first 16 lanes: sub-block s0, last 16: s0 + 1
                for (int k = 0; k < 4; ++k)
                    _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_set1_ps(dl[s0 + k / 2]), f[k]));
            }
        }
    }
}

// ---- dot product with Q8_K (avx2_util.h KQuantDot): unit u = 2-bit field t = u%4 of half h = u/4, and
// bit u of hmask[l]; stored q = 2 bits | hmask bit << 2 = value + 4 (the 4 comes off through the bsums);
// signed 6-bit scales of the sub-blocks of 16 are 2u and 2u+1 (ggml's kmask unpacking) ----
struct KQ3_K {
    using X = block_q3_K;
    static constexpr int kRM = 2, kRN = 4, kRMVec = 1;
    static constexpr bool kMins = false, kBsumOffset = true;
    struct Row {
        __m256i scales, bsum_w;
    };
    static void prepare(const X& x, Row& row) {
        constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint32_t aux[3];
        __builtin_memcpy(aux, x.scales, 12);
        // int32 k holds the low nibbles of sub-blocks 4k..4k+3 with their top 2 bits (q3_K_scale)
        __m128i s8 = _mm_set_epi32(int((aux[1] >> 4 & kmask2) | ((aux[2] >> 6 & kmask1) << 4)),
                                   int((aux[0] >> 4 & kmask2) | ((aux[2] >> 4 & kmask1) << 4)),
                                   int((aux[1] & kmask2) | ((aux[2] >> 2 & kmask1) << 4)),
                                   int((aux[0] & kmask2) | ((aux[2] & kmask1) << 4)));
        s8 = _mm_sub_epi8(s8, _mm_set1_epi8(32));
        // [s0, s2, .., s14 | s1, s3, .., s15]: unit u's two sub-blocks sit in lane u of each half
        row.scales = _mm256_cvtepi8_epi16(
            _mm_shuffle_epi8(s8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
        row.bsum_w = _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2);  // 4 * s
    }
    template <int U>
    static __m256i quants(const X& x) {
        const __m256i v = _mm256_srli_epi16(load_256(x.qs + 32 * (U / 4)), 2 * (U % 4));
        // bit U of each hmask byte to bit 2
        __m256i h = load_256(x.hmask);
        if constexpr (U < 2) h = _mm256_slli_epi16(h, 2 - U);
        if constexpr (U > 2) h = _mm256_srli_epi16(h, U - 2);
        return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi8(3)),
                               _mm256_and_si256(h, _mm256_set1_epi8(4)));
    }
};
using DotQ3_K = KQuantDot<KQ3_K>;

const kernels::CpuKernels kQ3_K = {
    .dequantize_row = dequantize_row_q3_K, .vec_dot = vec_dot<DotQ3_K>, .gemm = gemm<DotQ3_K>};
const kernels::Registrar q3_K_registrar(Isa::Avx2, TypeId::Q3_K, kQ3_K);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
