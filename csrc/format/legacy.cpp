// Reference quantizers of the legacy blocks, transcribed from ggml-quants.c quantize_row_*_ref in source
// order, and the row loops of their scalar dot products (the block math is in legacy.h). Built with
// -ffp-contract=off so the float math rounds exactly as ggml's (which has no FMA).
#include "format/legacy.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace qrt {

namespace {

// The value with the largest magnitude; the first one wins on ties (ggml compares amax < |v|).
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float v = x[j];
        if (amax < std::fabs(v)) {
            amax = std::fabs(v);
            max = v;
        }
    }
    return max;
}

void min_max(const float* x, int n, float* min, float* max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

template <typename Block, void (*DequantizeBlock)(const Block&, float*), int QK>
void dequantize_blocks(const void* x, float* y, int64_t n) {
    const Block* b = static_cast<const Block*>(x);
    for (int64_t i = 0; i < n / QK; ++i) DequantizeBlock(b[i], y + i * QK);
}

template <typename X, typename Y, float (*DotBlock)(const X&, const Y&), int QK>
float vec_dot_blocks(int64_t n, const void* vx, const void* vy) {
    const X* x = static_cast<const X*>(vx);
    const Y* y = static_cast<const Y*>(vy);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK; ++i) sumf += DotBlock(x[i], y[i]);
    return sumf;
}

}  // namespace

void dequantize_row_q4_0(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q4_0, dequantize_block_q4_0, QK4_0>(x, y, n);
}
void dequantize_row_q4_1(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q4_1, dequantize_block_q4_1, QK4_1>(x, y, n);
}
void dequantize_row_q5_0(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q5_0, dequantize_block_q5_0, QK5_0>(x, y, n);
}
void dequantize_row_q5_1(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q5_1, dequantize_block_q5_1, QK5_1>(x, y, n);
}
void dequantize_row_q8_0(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q8_0, dequantize_block_q8_0, QK8_0>(x, y, n);
}
void dequantize_row_q8_1(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q8_1, dequantize_block_q8_1, QK8_1>(x, y, n);
}

void quantize_row_q4_0_ref(const float* x, void* vy, int64_t n) {
    block_q4_0* y = static_cast<block_q4_0*>(vy);
    for (int64_t i = 0; i < n / QK4_0; ++i, x += QK4_0) {
        const float max = signed_absmax(x, QK4_0);
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < 16; ++j) {
            const uint8_t q0 = std::min<int8_t>(15, int8_t(x[j] * id + 8.5f));
            const uint8_t q1 = std::min<int8_t>(15, int8_t(x[16 + j] * id + 8.5f));
            y[i].qs[j] = q0 | (q1 << 4);
        }
    }
}

void quantize_row_q4_1_ref(const float* x, void* vy, int64_t n) {
    block_q4_1* y = static_cast<block_q4_1*>(vy);
    for (int64_t i = 0; i < n / QK4_1; ++i, x += QK4_1) {
        float min, max;
        min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int j = 0; j < 16; ++j) {
            const uint8_t q0 = std::min<int8_t>(15, int8_t((x[j] - min) * id + 0.5f));
            const uint8_t q1 = std::min<int8_t>(15, int8_t((x[16 + j] - min) * id + 0.5f));
            y[i].qs[j] = q0 | (q1 << 4);
        }
    }
}

void quantize_row_q5_0_ref(const float* x, void* vy, int64_t n) {
    block_q5_0* y = static_cast<block_q5_0*>(vy);
    for (int64_t i = 0; i < n / QK5_0; ++i, x += QK5_0) {
        const float max = signed_absmax(x, QK5_0);
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const uint8_t q0 = std::min<int8_t>(31, int8_t(x[j] * id + 16.5f));
            const uint8_t q1 = std::min<int8_t>(31, int8_t(x[16 + j] * id + 16.5f));
            y[i].qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= uint32_t((q0 & 0x10) >> 4) << j;
            qh |= uint32_t((q1 & 0x10) >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; ++k) y[i].qh[k] = uint8_t(qh >> (8 * k));
    }
}

void quantize_row_q5_1_ref(const float* x, void* vy, int64_t n) {
    block_q5_1* y = static_cast<block_q5_1*>(vy);
    for (int64_t i = 0; i < n / QK5_1; ++i, x += QK5_1) {
        float min, max;
        min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const uint8_t q0 = uint8_t((x[j] - min) * id + 0.5f);
            const uint8_t q1 = uint8_t((x[16 + j] - min) * id + 0.5f);
            y[i].qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= uint32_t((q0 & 0x10) >> 4) << j;
            qh |= uint32_t((q1 & 0x10) >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; ++k) y[i].qh[k] = uint8_t(qh >> (8 * k));
    }
}

void quantize_row_q8_0_ref(const float* x, void* vy, int64_t n) {
    block_q8_0* y = static_cast<block_q8_0*>(vy);
    for (int64_t i = 0; i < n / QK8_0; ++i, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = int8_t(std::round(x[j] * id));
    }
}

void quantize_row_q8_1_ref(const float* x, void* vy, int64_t n) {
    block_q8_1* y = static_cast<block_q8_1*>(vy);
    for (int64_t i = 0; i < n / QK8_1; ++i, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1 / 2; ++j) {
            y[i].qs[j] = int8_t(std::round(x[j] * id));
            y[i].qs[16 + j] = int8_t(std::round(x[16 + j] * id));
            sum += y[i].qs[j] + y[i].qs[16 + j];
        }
        y[i].s = fp32_to_fp16(sum * d);
    }
}

float vec_dot_q4_0_q8_0(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q4_0, block_q8_0, vec_dot_block_q4_0_q8_0, QK8_0>(n, x, y);
}
float vec_dot_q4_1_q8_1(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q4_1, block_q8_1, vec_dot_block_q4_1_q8_1, QK8_1>(n, x, y);
}
float vec_dot_q5_0_q8_0(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q5_0, block_q8_0, vec_dot_block_q5_0_q8_0, QK8_0>(n, x, y);
}
float vec_dot_q5_1_q8_1(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q5_1, block_q8_1, vec_dot_block_q5_1_q8_1, QK8_1>(n, x, y);
}
float vec_dot_q8_0_q8_0(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q8_0, block_q8_0, vec_dot_block_q8_0_q8_0, QK8_0>(n, x, y);
}

void q8_0_block_sums(const void* x, int64_t n, int32_t* sums) {
    const block_q8_0* b = static_cast<const block_q8_0*>(x);
    for (int64_t l = 0; l < n / QK8_0; ++l) {
        int32_t s = 0;
        for (int j = 0; j < QK8_0; ++j) s += b[l].qs[j];
        sums[l] = s;
    }
}

}  // namespace qrt
