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

// The 32 int8 lanes of q as four vectors of 8 floats, in lane order.
void i8x32_to_ps(__m256i q, __m256 f[4]) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

// get_scale_min_k4 for all eight sub-blocks at once: bytes 0..7 = scales, bytes 8..15 = mins.
__m128i scales_mins_k4(const uint8_t* scales) {
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

// y[0..31] = dl*q - ml
void store_32(__m256i q, float dl, float ml, float* y) {
    __m256 f[4];
    i8x32_to_ps(q, f);
    const __m256 d = _mm256_set1_ps(dl), m = _mm256_set1_ps(ml);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d, f[k]), m));
}

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

struct KQ4_K {
    using X = block_q4_K;
    static constexpr int kRM = 2, kRN = 4, kRMVec = 1;
    static constexpr bool kMins = true, kBsumOffset = false;
    struct Row {
        __m256i scales, bsum_w;
    };
    static void prepare(const X& x, Row& row) {
        const __m256i sm = _mm256_broadcastsi128_si256(scales_mins_k4_packed(x.scales));
        constexpr char z = -1;  // vpshufb: zero byte
        // [s0..s7 | s0..s7] as int16
        row.scales =
            _mm256_shuffle_epi8(sm, _mm256_setr_epi8(0, z, 1, z, 2, z, 3, z, 8, z, 9, z, 10, z, 11, z, 0, z,
                                                     1, z, 2, z, 3, z, 8, z, 9, z, 10, z, 11, z));
        // m0 m0 m1 m1 .. m7 m7 as int16: unit u's min times bsums 2u and 2u+1
        row.bsum_w =
            _mm256_shuffle_epi8(sm, _mm256_setr_epi8(4, z, 4, z, 5, z, 5, z, 6, z, 6, z, 7, z, 7, z, 12, z,
                                                     12, z, 13, z, 13, z, 14, z, 14, z, 15, z, 15, z));
    }
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
