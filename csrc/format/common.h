// Shared scalar helpers for the block formats: half/bfloat16 conversion, rounding, block constants.
//
// Everything here is QRT_HD (host + device) so the CUDA kernels use the very same arithmetic the CPU
// reference uses, and the CPU tests cover the GPU's block math.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QRT_HD __host__ __device__ __forceinline__
#else
#define QRT_HD inline
#endif

namespace qrt {

constexpr int QK_K = 256;         // elements per k-quant super-block
constexpr int K_SCALE_SIZE = 12;  // bytes of packed 6-bit scales/mins in Q4_K/Q5_K
constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;

using half_bits = uint16_t;  // IEEE binary16, stored as raw bits
using bf16_bits = uint16_t;  // bfloat16, stored as raw bits

QRT_HD uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

QRT_HD float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// binary16 -> float, exact for every input (subnormals, inf, NaN payload kept).
QRT_HD float fp16_to_fp32(half_bits h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return f32_from_bits(sign);
    // Subnormal half: normalise into a float.
    int e = 113;
    while ((mant & 0x400) == 0) {
        mant <<= 1;
        --e;
    }
    return f32_from_bits(sign | (uint32_t(e) << 23) | ((mant & 0x3ff) << 13));
}

// float -> binary16 rounding to nearest even, like numpy's astype(float16), F16C and ggml's
// GGML_FP32_TO_FP16; overflow goes to inf, NaN stays NaN.
QRT_HD half_bits fp32_to_fp16(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return half_bits(sign | 0x7e00 | ((abs >> 13) & 0x3ff));  // NaN
    if (abs >= 0x477ff000u) return half_bits(sign | 0x7c00);  // rounds to >= 65520: inf
    if (abs < 0x38800000u) {
        // Result is subnormal (or zero): shift the full mantissa into place and round half to even.
        if (abs < 0x33000000u) return half_bits(sign);  // < 2^-25 rounds to zero
        const uint32_t e = abs >> 23;
        const uint32_t m = (abs & 0x7fffff) | 0x800000;
        const uint32_t shift = 126 - e;  // 14..24
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1))) ++r;
        return half_bits(sign | r);
    }
    uint32_t r = ((abs >> 13) - (112u << 10));
    const uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;  // may carry into the exponent: correct
    return half_bits(sign | r);
}

// bfloat16 per ggml-impl.h ggml_compute_fp32_to_bf16: NaN keeps quiet bit set, else round to nearest even.
QRT_HD bf16_bits fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_bits((u >> 16) | 64);
    return bf16_bits((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

QRT_HD float bf16_to_fp32(bf16_bits b) {
    return f32_from_bits(uint32_t(b) << 16);
}

// ggml-quants.c nearest_int: round half to even via the 1.5*2^23 trick; valid for |f| <= 4194303.
QRT_HD int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

}  // namespace qrt
