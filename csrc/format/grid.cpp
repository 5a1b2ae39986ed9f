// Per-element grids of the block types and storing quants on a fixed grid (grid.h). The element order and
// bit positions are those of the dequantizers in legacy.h and kquants.h (ggml-common.h's layouts).
#include "format/grid.h"

#include <cstring>

#include "format/kquants.h"
#include "format/legacy.h"

namespace qrt {

namespace {

// Q2_K/Q3_K's qs: element e of a super-block is bits 2t..2t+1 of qs[32h + e%32], h = e/128, t = (e%128)/32.
void set_2bit(uint8_t* qs, int e, int v) {
    const int byte = 32 * (e / 128) + e % 32, shift = 2 * ((e % 128) / 32);
    qs[byte] = uint8_t((qs[byte] & ~(3 << shift)) | ((v & 3) << shift));
}

// Q5_0/Q5_1: element j < 16 is the low nibble of qs[j], element j >= 16 the high nibble of qs[j-16]; bit 4
// of element j is bit j of the little-endian qh word.
template <typename Block>
void set_5bit_legacy(Block& b, const int* L) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        b.qs[j] = uint8_t((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
        qh |= uint32_t((L[j] >> 4) & 1) << j;
        qh |= uint32_t((L[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; ++k) b.qh[k] = uint8_t(qh >> (8 * k));
}

void grid_block(TypeId id, const uint8_t* p, float* a, float* o) {
    switch (id) {
        case TypeId::Q4_0: {
            const float d = fp16_to_fp32(reinterpret_cast<const block_q4_0*>(p)->d);
            for (int i = 0; i < QK4_0; ++i) a[i] = d, o[i] = 0;
            return;
        }
        case TypeId::Q4_1: {
            const auto& b = *reinterpret_cast<const block_q4_1*>(p);
            const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
            for (int i = 0; i < QK4_1; ++i) a[i] = d, o[i] = m;
            return;
        }
        case TypeId::Q5_0: {
            const float d = fp16_to_fp32(reinterpret_cast<const block_q5_0*>(p)->d);
            for (int i = 0; i < QK5_0; ++i) a[i] = d, o[i] = 0;
            return;
        }
        case TypeId::Q5_1: {
            const auto& b = *reinterpret_cast<const block_q5_1*>(p);
            const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
            for (int i = 0; i < QK5_1; ++i) a[i] = d, o[i] = m;
            return;
        }
        case TypeId::Q8_0: {
            const float d = fp16_to_fp32(reinterpret_cast<const block_q8_0*>(p)->d);
            for (int i = 0; i < QK8_0; ++i) a[i] = d, o[i] = 0;
            return;
        }
        case TypeId::Q2_K: {
            const auto& b = *reinterpret_cast<const block_q2_K*>(p);
            const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
            for (int i = 0; i < QK_K; ++i) {
                const uint8_t sc = b.scales[i / 16];
                a[i] = d * (sc & 0xF), o[i] = -(min * (sc >> 4));
            }
            return;
        }
        case TypeId::Q3_K: {
            const auto& b = *reinterpret_cast<const block_q3_K*>(p);
            const float d = fp16_to_fp32(b.d);
            for (int i = 0; i < QK_K; ++i) a[i] = d * q3_K_scale(b.scales, i / 16), o[i] = 0;
            return;
        }
        case TypeId::Q4_K:
        case TypeId::Q5_K: {
            // d, dmin and scales sit at the same offsets in both blocks
            const auto& b = *reinterpret_cast<const block_q4_K*>(p);
            const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
            for (int j = 0; j < QK_K / 32; ++j) {
                uint8_t sc, m;
                get_scale_min_k4(j, b.scales, &sc, &m);
                for (int i = 32 * j; i < 32 * j + 32; ++i) a[i] = d * sc, o[i] = -(min * m);
            }
            return;
        }
        case TypeId::Q6_K: {
            const auto& b = *reinterpret_cast<const block_q6_K*>(p);
            const float d = fp16_to_fp32(b.d);
            for (int i = 0; i < QK_K; ++i) a[i] = d * b.scales[i / 16], o[i] = 0;
            return;
        }
        default:
            return;
    }
}

void set_block(TypeId id, uint8_t* p, const int8_t* q) {
    int L[QK_K];
    switch (id) {
        case TypeId::Q4_0:
        case TypeId::Q4_1: {
            const int zero = id == TypeId::Q4_0 ? 8 : 0;
            uint8_t* qs = id == TypeId::Q4_0 ? reinterpret_cast<block_q4_0*>(p)->qs
                                             : reinterpret_cast<block_q4_1*>(p)->qs;
            for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] + zero) | ((q[j + 16] + zero) << 4));
            return;
        }
        case TypeId::Q5_0:
            for (int j = 0; j < 32; ++j) L[j] = q[j] + 16;
            set_5bit_legacy(*reinterpret_cast<block_q5_0*>(p), L);
            return;
        case TypeId::Q5_1:
            for (int j = 0; j < 32; ++j) L[j] = q[j];
            set_5bit_legacy(*reinterpret_cast<block_q5_1*>(p), L);
            return;
        case TypeId::Q8_0:
            std::memcpy(reinterpret_cast<block_q8_0*>(p)->qs, q, QK8_0);
            return;
        case TypeId::Q2_K: {
            auto& b = *reinterpret_cast<block_q2_K*>(p);
            for (int e = 0; e < QK_K; ++e) set_2bit(b.qs, e, q[e]);
            return;
        }
        case TypeId::Q3_K: {  // L = q + 4: bit 2 in hmask (element e -> bit e/32 of hmask[e%32]), bits 0-1 in
                              // qs
            auto& b = *reinterpret_cast<block_q3_K*>(p);
            std::memset(b.hmask, 0, sizeof b.hmask);
            for (int e = 0; e < QK_K; ++e) {
                const int l = q[e] + 4;
                if (l > 3) b.hmask[e % 32] |= uint8_t(1 << (e / 32));
                set_2bit(b.qs, e, l & 3);
            }
            return;
        }
        case TypeId::Q4_K: {  // 64-element chunk c: qs[32c + l] = L[64c + l] | L[64c + l + 32] << 4
            auto& b = *reinterpret_cast<block_q4_K*>(p);
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l)
                    b.qs[32 * c + l] = uint8_t(q[64 * c + l] | (q[64 * c + l + 32] << 4));
            return;
        }
        case TypeId::Q5_K: {  // as Q4_K; the fifth bit of element 64c + l (+32) is bit 2c (2c+1) of qh[l]
            auto& b = *reinterpret_cast<block_q5_K*>(p);
            std::memset(b.qh, 0, sizeof b.qh);
            for (int c = 0; c < 4; ++c) {
                for (int l = 0; l < 32; ++l) {
                    const int l1 = q[64 * c + l], l2 = q[64 * c + l + 32];
                    if (l1 > 15) b.qh[l] |= uint8_t(1 << (2 * c));
                    if (l2 > 15) b.qh[l] |= uint8_t(2 << (2 * c));
                    b.qs[32 * c + l] = uint8_t((l1 & 0xF) | ((l2 & 0xF) << 4));
                }
            }
            return;
        }
        case TypeId::Q6_K: {  // L = q + 32: low nibbles in ql, top 2 bits in qh (quantize_row_q6_K_ref's
                              // packing)
            auto& b = *reinterpret_cast<block_q6_K*>(p);
            for (int e = 0; e < QK_K; ++e) L[e] = q[e] + 32;
            for (int h = 0; h < 2; ++h) {
                const int* l6 = L + 128 * h;
                uint8_t* ql = b.ql + 64 * h;
                uint8_t* qh = b.qh + 32 * h;
                for (int l = 0; l < 32; ++l) {
                    ql[l] = uint8_t((l6[l] & 0xF) | ((l6[l + 64] & 0xF) << 4));
                    ql[l + 32] = uint8_t((l6[l + 32] & 0xF) | ((l6[l + 96] & 0xF) << 4));
                    qh[l] = uint8_t((l6[l] >> 4) | ((l6[l + 32] >> 4) << 2) | ((l6[l + 64] >> 4) << 4) |
                                    ((l6[l + 96] >> 4) << 6));
                }
            }
            return;
        }
        default:
            return;
    }
}

}  // namespace

bool grid_range(const TypeTraits& t, int* qmin, int* qmax) {
    switch (t.id) {
        case TypeId::Q4_0:
            *qmin = -8, *qmax = 7;
            return true;
        case TypeId::Q4_1:
            *qmin = 0, *qmax = 15;
            return true;
        case TypeId::Q5_0:
            *qmin = -16, *qmax = 15;
            return true;
        case TypeId::Q5_1:
            *qmin = 0, *qmax = 31;
            return true;
        case TypeId::Q8_0:
            *qmin = -128, *qmax = 127;
            return true;
        case TypeId::Q2_K:
            *qmin = 0, *qmax = 3;
            return true;
        case TypeId::Q3_K:
            *qmin = -4, *qmax = 3;
            return true;
        case TypeId::Q4_K:
            *qmin = 0, *qmax = 15;
            return true;
        case TypeId::Q5_K:
            *qmin = 0, *qmax = 31;
            return true;
        case TypeId::Q6_K:
            *qmin = -32, *qmax = 31;
            return true;
        default:
            return false;
    }
}

void row_grid(const TypeTraits& t, const void* row, int64_t n, float* scale, float* offset) {
    const uint8_t* p = static_cast<const uint8_t*>(row);
    for (int64_t i = 0; i < n; i += t.block_size, p += t.type_size)
        grid_block(t.id, p, scale + i, offset + i);
}

void set_row_quants(const TypeTraits& t, void* row, int64_t n, const int8_t* q) {
    uint8_t* p = static_cast<uint8_t*>(row);
    for (int64_t i = 0; i < n; i += t.block_size, p += t.type_size) set_block(t.id, p, q + i);
}

}  // namespace qrt
