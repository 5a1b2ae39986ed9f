// Fast kernels of the 32-element legacy blocks Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (format/legacy.h).
//
// Each block is unpacked into 32 int8 lanes in element order (low nibbles of qs = elements 0..15, high
// nibbles = 16..31; Q5's fifth bits spread from qh), then widened eight at a time to float and scaled
// with a separate multiply and add, exactly like the reference's `q*d` / `q*d + m`.
#include "format/legacy.h"

#include "kernels/dispatch.h"

#if defined(__AVX2__)
#include <immintrin.h>

namespace qrt::avx2 {
namespace {

__m256 load_half(const half_bits& h) {
    return _mm256_set1_ps(_cvtsh_ss(h));
}

// 16 bytes of nibbles -> 32 bytes: the low nibbles, then the high nibbles (ggml bytes_from_nibbles_32).
__m256i bytes_from_nibbles_32(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// Bit e of the little-endian 32-bit qh -> byte e = 0xFF if set, else 0 (ggml bytes_from_bits_32):
// broadcast byte e/8 of qh to byte e, set every bit but bit e%8, and compare with all ones.
__m256i bytes_from_bits_32(const uint8_t* qh) {
    int32_t x32;
    __builtin_memcpy(&x32, qh, sizeof x32);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    return _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1));
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

const kernels::CpuKernels kQ4_0 = {.dequantize_row = dequantize_row_q4_0};
const kernels::CpuKernels kQ4_1 = {.dequantize_row = dequantize_row_q4_1};
const kernels::CpuKernels kQ5_0 = {.dequantize_row = dequantize_row_q5_0};
const kernels::CpuKernels kQ5_1 = {.dequantize_row = dequantize_row_q5_1};
const kernels::CpuKernels kQ8_0 = {.dequantize_row = dequantize_row_q8_0};
const kernels::Registrar q4_0_registrar(Isa::Avx2, TypeId::Q4_0, kQ4_0);
const kernels::Registrar q4_1_registrar(Isa::Avx2, TypeId::Q4_1, kQ4_1);
const kernels::Registrar q5_0_registrar(Isa::Avx2, TypeId::Q5_0, kQ5_0);
const kernels::Registrar q5_1_registrar(Isa::Avx2, TypeId::Q5_1, kQ5_1);
const kernels::Registrar q8_0_registrar(Isa::Avx2, TypeId::Q8_0, kQ8_0);

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
