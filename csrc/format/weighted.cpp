// Importance-weighted quantizers, transcribed from ggml-quants.c quantize_row_*_impl and the searches they
// share (make_qx_quants, make_qkx3_quants, make_qp_quants) and checked byte for byte against
// ggml_quantize_chunk with quant_weights.
//
// Bit-exactness rests on what kquants.cpp's header says: -ffp-contract=off, ggml's operand order in every
// float expression, and ggml's implicit integer narrowings (nearest_int stored into uint8_t/int8_t before a
// MIN, or without any clamp), which decide what out-of-range intermediates become.
#include "format/weighted.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/parallel.h"
#include "format/kquants.h"
#include "format/legacy.h"

namespace qrt {

namespace {

constexpr float GROUP_MAX_EPS = 1e-15f;

// ggml make_qx_quants with rmse_type = 1 and importance weights qw: symmetric L in -nmax..nmax-1 (stored
// +nmax), 19 grid scales -(nmax + 0.1*is)/max, keeping the best weighted least-squares fit.
float make_qx_quants_w(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = int8_t(l + nmax);
        const float w = qw[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = std::max(-nmax, std::min(nmax - 1, l));
            const float w = qw[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// ggml make_qp_quants: quantize the (non-negative) sub-block scales or mins x to L in 0..nmax with one
// positive super-scale, weighting each by quant_weights; a grid search, then up to 5 passes of coordinate
// descent on L. ggml stores nearest_int straight into uint8_t without a lower clamp; so do we.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
    if (max < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest_int(iscale * x[i]));
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * L[i];
        const float w = quant_weights[i];
        best_mse += w * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale_is * x[i]);
            l = std::min(nmax, l);
            const float diff = x[i] - scale_is * l;
            const float w = quant_weights[i];
            mse += w * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::min(nmax, l);
        L[i] = uint8_t(l);
        const float w = quant_weights[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = quant_weights[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = std::min(nmax, new_l);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = uint8_t(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// The weight of each value in a block: its column's importance times sqrt(sigma2 + x²), sigma2 being the
// row's (legacy types) or super-block's (k-quants) mean square, scaled as ggml scales it per type.
void importance(const float* x, const float* qw, float sigma2, int n, float* weight) {
    for (int j = 0; j < n; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

float sum_squares(const float* x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2;
}

// Q4_0/Q5_0: symmetric 4/5-bit codes (nmax 8/16) with the weighted make_qx_quants; the 5th bits go to qh.
template <typename Block, int Nmax>
void quantize_row_symmetric(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    Block* y = static_cast<Block*>(vy);
    constexpr int QK = 32;
    float weight[QK];
    int8_t L[QK];
    const float sigma2 = sum_squares(x, n_per_row) / n_per_row;
    for (int64_t ib = 0; ib < n_per_row / QK; ++ib) {
        const float* xb = x + QK * ib;
        importance(xb, quant_weights + QK * ib, sigma2, QK, weight);
        const float d = make_qx_quants_w(QK, Nmax, xb, L, weight);
        y[ib].d = fp32_to_fp16(d);
        if constexpr (Nmax == 8) {
            for (int j = 0; j < 16; ++j) y[ib].qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
        } else {
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                const uint8_t xi0 = uint8_t(L[j]), xi1 = uint8_t(L[j + 16]);
                y[ib].qs[j] = uint8_t((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
                qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
            }
            std::memcpy(y[ib].qh, &qh, sizeof(qh));
        }
    }
}

// Q4_1/Q5_1: affine 4/5-bit codes (nmax 15/31) with make_qkx3_quants; m = -min.
template <typename Block, int Nmax>
void quantize_row_affine(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    Block* y = static_cast<Block*>(vy);
    constexpr int QK = 32;
    float weight[QK];
    uint8_t L[QK], Laux[QK];
    const float sigma2 = sum_squares(x, n_per_row) / n_per_row;
    for (int64_t ib = 0; ib < n_per_row / QK; ++ib) {
        const float* xb = x + QK * ib;
        importance(xb, quant_weights + QK * ib, sigma2, QK, weight);
        float min;
        const float d = make_qkx2_quants(QK, Nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[ib].d = fp32_to_fp16(d);
        y[ib].m = fp32_to_fp16(-min);
        if constexpr (Nmax == 15) {
            for (int j = 0; j < 16; ++j) y[ib].qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
        } else {
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                const uint8_t xi0 = L[j], xi1 = L[j + 16];
                y[ib].qs[j] = uint8_t((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
                qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
            }
            std::memcpy(y[ib].qh, &qh, sizeof(qh));
        }
    }
}

// Q4_K/Q5_K: 8 sub-blocks of 32 fitted by make_qkx3_quants, their scales and mins quantized to 6 bits by
// make_qp_quants weighted by each sub-block's total importance, then every value requantized against the
// stored scales. Q5_K clamps the 6-bit codes to 63, Q4_K does not (ggml's difference, kept).
template <typename Block>
void quantize_superblock_q45_K_w(const float* x, Block& y, uint8_t* L, int nmax, const float* qw_block) {
    uint8_t Laux[32];
    uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float weights[32];
    float sw[QK_K / 32];
    float mins[QK_K / 32];
    float scales[QK_K / 32];
    const float sigma2 = 2 * sum_squares(x, QK_K) / QK_K;
    for (int j = 0; j < QK_K / 32; ++j) {
        importance(x + 32 * j, qw_block + 32 * j, sigma2, 32, weights);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f,
                                     36, false);
    }
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (nmax == 31) {
            ls = std::min<uint8_t>(63, ls);
            lm = std::min<uint8_t>(63, lm);
        }
        if (j < 4) {
            y.scales[j] = ls;
            y.scales[j + 4] = lm;
        } else {
            y.scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
            y.scales[j - 4] |= uint8_t((ls >> 4) << 6);
            y.scales[j - 0] |= uint8_t((lm >> 4) << 6);
        }
    }
    y.d = fp32_to_fp16(d_block);
    y.dmin = fp32_to_fp16(m_block);
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, y.scales, &sc, &m);
        const float d = fp16_to_fp32(y.d) * sc;
        if (!d) continue;
        const float dm = fp16_to_fp32(y.dmin) * m;
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, l)));
        }
    }
}

}  // namespace

void quantize_row_q4_0_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights) {
    quantize_row_symmetric<block_q4_0, 8>(x, y, n_per_row, quant_weights);
}
void quantize_row_q5_0_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights) {
    quantize_row_symmetric<block_q5_0, 16>(x, y, n_per_row, quant_weights);
}
void quantize_row_q4_1_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights) {
    quantize_row_affine<block_q4_1, 15>(x, y, n_per_row, quant_weights);
}
void quantize_row_q5_1_weighted(const float* x, void* y, int64_t n_per_row, const float* quant_weights) {
    quantize_row_affine<block_q5_1, 31>(x, y, n_per_row, quant_weights);
}

// ggml-quants.c quantize_row_q2_K_impl: 16 sub-blocks of 16 fitted by make_qkx3_quants, 4-bit scales and
// mins by make_qp_quants, then requantized against the stored scales.
void quantize_row_q2_K_weighted(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    block_q2_K* y = static_cast<block_q2_K*>(vy);
    for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        uint8_t Laux[16];
        float mins[QK_K / 16];
        float scales[QK_K / 16];
        float sw[QK_K / 16] = {};
        float weight[16];
        uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
        const float sigma2 = sum_squares(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 16; ++j) {
            importance(x + 16 * j, quant_weights + QK_K * i + 16 * j, sigma2, 16, weight);
            for (int l = 0; l < 16; ++l) sw[j] += weight[l];
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                         36, false);
        }
        const float dm0 = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
        const float mm0 = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
        y[i].d = fp32_to_fp16(dm0);
        y[i].dmin = fp32_to_fp16(mm0);
        const float dm = fp16_to_fp32(y[i].d);
        const float mm = fp16_to_fp32(y[i].dmin);
        for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = dm * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float m = mm * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int((x[16 * j + ii] + m) / d);
                L[16 * j + ii] = uint8_t(std::max(0, std::min(3, l)));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

// ggml-quants.c quantize_row_q3_K_impl: 16 sub-blocks of 16 by the weighted make_qx_quants, their scales
// to 6 bits by make_qx_quants weighted by each sub-block's total importance.
void quantize_row_q3_K_weighted(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    block_q3_K* y = static_cast<block_q3_K*>(vy);
    for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float weight[16];
        float sw[QK_K / 16];
        int8_t Ls[QK_K / 16];
        const float sigma2 = 2 * sum_squares(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 16; ++j) {
            importance(x + 16 * j, quant_weights + QK_K * i + 16 * j, sigma2, 16, weight);
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = make_qx_quants_w(16, 4, x + 16 * j, L + 16 * j, weight);
        }
        std::memset(y[i].scales, 0, 12);
        const float d_block = make_qx_quants_w(QK_K / 16, 32, scales, Ls, sw);
        for (int j = 0; j < QK_K / 16; ++j) {
            int l = Ls[j];
            if (j < 8)
                y[i].scales[j] = uint8_t(l & 0xF);
            else
                y[i].scales[j - 8] |= uint8_t((l & 0xF) << 4);
            l >>= 4;
            y[i].scales[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
        }
        y[i].d = fp32_to_fp16(d_block);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = fp16_to_fp32(y[i].d) * int8_t(q3_K_scale(y[i].scales, j));
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = int8_t(std::max(-4, std::min(3, l)) + 4);
            }
        }
        // L is 0..7: bit 2 goes to hmask (element e -> bit e/32 of hmask[e%32]), bits 0-1 to qs.
        std::memset(y[i].hmask, 0, QK_K / 8);
        uint8_t L2[QK_K];
        for (int e = 0; e < QK_K; ++e) {
            if (L[e] > 3) y[i].hmask[e % 32] |= uint8_t(1 << (e / 32));
            L2[e] = uint8_t(L[e] > 3 ? L[e] - 4 : L[e]);
        }
        pack_2bit(L2, y[i].qs);
    }
}

// ggml-quants.c quantize_row_q4_K_impl
void quantize_row_q4_K_weighted(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    block_q4_K* y = static_cast<block_q4_K*>(vy);
    for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        quantize_superblock_q45_K_w(x, y[i], L, 15, quant_weights + QK_K * i);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y[i].qs[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + l + 32] << 4));
    }
}

// ggml-quants.c quantize_row_q5_K_impl
void quantize_row_q5_K_weighted(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    block_q5_K* y = static_cast<block_q5_K*>(vy);
    for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        quantize_superblock_q45_K_w(x, y[i], L, 31, quant_weights + QK_K * i);
        std::memset(y[i].qh, 0, QK_K / 8);
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                const int l1 = L[64 * c + l], l2 = L[64 * c + l + 32];
                if (l1 > 15) y[i].qh[l] |= uint8_t(1 << (2 * c));
                if (l2 > 15) y[i].qh[l] |= uint8_t(2 << (2 * c));
                y[i].qs[32 * c + l] = uint8_t((l1 & 0xF) | ((l2 & 0xF) << 4));
            }
        }
    }
}

// ggml-quants.c quantize_row_q6_K_impl: as quantize_row_q6_K_ref, with the column importances (not
// multiplied by sqrt(sigma2 + x²): ggml has that commented out) weighting make_qx_quants.
void quantize_row_q6_K_weighted(const float* x, void* vy, int64_t n_per_row, const float* quant_weights) {
    block_q6_K* y = static_cast<block_q6_K*>(vy);
    for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            scales[ib] =
                make_qx_quants_w(16, 32, x + 16 * ib, L + 16 * ib, quant_weights + QK_K * i + 16 * ib);
            const float abs_scale = std::fabs(scales[ib]);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            std::memset(&y[i], 0, sizeof(block_q6_K));
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ++ib)
            y[i].scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = fp16_to_fp32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = int8_t(std::max(-32, std::min(31, l)) + 32);
            }
        }
        for (int h = 0; h < 2; ++h) {
            const int8_t* q = L + 128 * h;
            uint8_t* ql = y[i].ql + 64 * h;
            uint8_t* qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                ql[l] = uint8_t((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
                ql[l + 32] = uint8_t((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
                qh[l] = uint8_t((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                ((q[l + 96] >> 4) << 6));
            }
        }
    }
}

void quantize_tensor_weighted(const TypeTraits& t, const float* x, int64_t ne0, int64_t nrows,
                              const float* quant_weights, uint8_t* out, int n_threads) {
    if (!quant_weights || !t.quantize_row_weighted) {
        t.quantize_tensor(x, ne0, nrows, out, n_threads);
        return;
    }
    const size_t row_bytes = size_t(ne0 / t.block_size) * t.type_size;
    const int64_t rows_per_chunk = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, ne0));
    parallel_for(nrows, n_threads, rows_per_chunk, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            t.quantize_row_weighted(x + r * ne0, out + size_t(r) * row_bytes, ne0, quant_weights);
    });
}

}  // namespace qrt
