// Reference quantizers of the k-quant super-blocks, transcribed from ggml-quants.c quantize_row_*_ref
// (the path llama-quantize takes without an importance matrix) and checked byte for byte against it, and
// the row loops of the scalar dot products with Q8_K (their block math is in kquants.h).
//
// Bit-exactness rests on three things (FORMATS.md §2.0): this file is built with -ffp-contract=off, every
// float expression keeps ggml's operand order (`w*l*l` is `(w*l)*l`, sums run front to back), and the
// integer narrowings ggml does implicitly (int -> uint8_t/int8_t before a MIN/MAX) are done the same way,
// because they decide what happens to out-of-range intermediate values.
#include "format/kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qrt {

namespace {

constexpr float GROUP_MAX_EPS = 1e-15f;

template <typename Block, void (*DequantizeBlock)(const Block&, float*)>
void dequantize_blocks(const void* x, float* y, int64_t n) {
    const Block* b = static_cast<const Block*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i) DequantizeBlock(b[i], y + i * QK_K);
}

template <typename Block, float (*DotBlock)(const Block&, const block_q8_K&)>
float vec_dot_blocks(int64_t n, const void* vx, const void* vy) {
    const Block* x = static_cast<const Block*>(vx);
    const block_q8_K* y = static_cast<const block_q8_K*>(vy);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) sumf += DotBlock(x[i], y[i]);
    return sumf;
}

// ggml-quants.c make_qx_quants with rmse_type = 1 and no importance weights (the only way
// quantize_row_q6_K_ref calls it): symmetric L in -nmax..nmax-1 weighted by x², trying 19 grid scales
// -(nmax + 0.1*is)/max and keeping the one with the best weighted least-squares fit. L is stored +nmax.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
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
        const float w = x[i] * x[i];
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
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        // sumlx²/suml2 is the error reduction of the best fit; compare without dividing.
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

// ggml-quants.c make_q3_quants with do_rmse = true (as quantize_row_q3_K_ref calls it): start from the
// grid -nmax/max, then up to 5 passes of coordinate descent, moving one L_i at a time to its least-squares
// optimum given the others when that improves sumlx²/suml2. L is stored +nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
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
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = int8_t(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = std::max(-nmax, std::min(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = int8_t(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// The scale/min search shared by Q4_K and Q5_K (8 sub-blocks of 32, 6-bit scales and mins); writes d,
// dmin, scales and the final L (0..nmax) of one super-block.
template <typename Block>
void quantize_superblock_q45_K(const float* x, Block& y, uint8_t* L, int nmax, float rmin, int nstep) {
    uint8_t Laux[32];
    float weights[32];
    float mins[QK_K / 32];
    float scales[QK_K / 32];
    float max_scale = 0;  // as the min is subtracted, the scales are positive
    float max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        // Weight each value by the sub-block's RMS plus its own magnitude.
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                     nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }

    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        // ggml stores nearest_int's result in a uint8_t before clamping; keep that narrowing.
        const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
        const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
        if (j < 4) {
            y.scales[j] = ls;
            y.scales[j + 4] = lm;
        } else {
            y.scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
            y.scales[j - 4] |= uint8_t((ls >> 4) << 6);
            y.scales[j] |= uint8_t((lm >> 4) << 6);
        }
    }
    y.d = fp32_to_fp16(max_scale / 63.f);
    y.dmin = fp32_to_fp16(max_min / 63.f);

    // Requantize against the rounded scales actually stored; a zero scale keeps make_qkx2_quants' L.
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

// ggml-quants.c make_qkx2_quants: fit x ~ scale*L + min (L in 0..nmax, min <= 0) minimising the
// weighted error (|.| if use_mad, else squared). Starts from the min/max grid, then tries nstep+1 grid
// spacings (rmin + rdelta*is + nmax)/(max-min) and solves the weighted least squares for scale and min on
// each. Returns scale; *the_min receives -min (>= 0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = uint8_t(std::max(0, std::min(nmax, l)));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = uint8_t(l);
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {  // the format only has non-positive mins: refit the scale alone
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                std::memcpy(L, Laux, size_t(n));
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Packs 2-bit L (0..3) of one super-block into Q2_K/Q3_K's qs: byte l of half h holds elements
// 128h + l + 32t in bits 2t..2t+1.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] =
                uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void dequantize_row_q2_K(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q2_K, dequantize_block_q2_K>(x, y, n);
}
void dequantize_row_q3_K(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q3_K, dequantize_block_q3_K>(x, y, n);
}
void dequantize_row_q4_K(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q4_K, dequantize_block_q4_K>(x, y, n);
}
void dequantize_row_q5_K(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q5_K, dequantize_block_q5_K>(x, y, n);
}
void dequantize_row_q6_K(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q6_K, dequantize_block_q6_K>(x, y, n);
}
void dequantize_row_q8_K(const void* x, float* y, int64_t n) {
    dequantize_blocks<block_q8_K, dequantize_block_q8_K>(x, y, n);
}

float vec_dot_q2_K_q8_K(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q2_K, vec_dot_block_q2_K_q8_K>(n, x, y);
}
float vec_dot_q3_K_q8_K(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q3_K, vec_dot_block_q3_K_q8_K>(n, x, y);
}
float vec_dot_q4_K_q8_K(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q4_K, vec_dot_block_q4_K_q8_K>(n, x, y);
}
float vec_dot_q5_K_q8_K(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q5_K, vec_dot_block_q5_K_q8_K>(n, x, y);
}
float vec_dot_q6_K_q8_K(int64_t n, const void* x, const void* y) {
    return vec_dot_blocks<block_q6_K, vec_dot_block_q6_K_q8_K>(n, x, y);
}

// ggml-quants.c quantize_row_q2_K_ref
void quantize_row_q2_K_ref(const float* x, void* vy, int64_t n) {
    block_q2_K* y = static_cast<block_q2_K*>(vy);
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        uint8_t Laux[16];
        float weights[16];
        float mins[QK_K / 16];
        float scales[QK_K / 16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f,
                                         15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        // 4-bit scales in the low nibbles, 4-bit mins in the high nibbles. ggml does not clamp and stores
        // through uint8_t; nearest_int(15/max*v) <= 15 because v <= max.
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(nearest_int(iscale * scales[j]));
            y[i].d = fp32_to_fp16(max_scale / q4scale);
        } else {
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = fp32_to_fp16(0.f);
        }

        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = uint8_t(std::max(0, std::min(3, l)));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

// ggml-quants.c quantize_row_q3_K_ref
void quantize_row_q3_K_ref(const float* x, void* vy, int64_t n) {
    block_q3_K* y = static_cast<block_q3_K*>(vy);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, amax = 0;  // the scale of largest magnitude, with its sign
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }

        std::memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                int8_t l = int8_t(nearest_int(iscale * scales[j]));  // ggml narrows to int8_t first
                l = int8_t(std::max<int8_t>(-32, std::min<int8_t>(31, l)) + 32);
                if (j < 8)
                    y[i].scales[j] = uint8_t(l & 0xF);
                else
                    y[i].scales[j - 8] |= uint8_t((l & 0xF) << 4);
                l = int8_t(l >> 4);
                y[i].scales[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
            }
            y[i].d = fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = fp32_to_fp16(0.f);
        }

        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = fp16_to_fp32(y[i].d) * q3_K_scale(y[i].scales, j);
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = int8_t(std::max(-4, std::min(3, l)) + 4);
            }
        }

        // L is 0..7: its bit 2 goes to hmask (element e -> bit e/32 of hmask[e%32]), bits 0-1 to qs.
        std::memset(y[i].hmask, 0, QK_K / 8);
        uint8_t L2[QK_K];
        for (int e = 0; e < QK_K; ++e) {
            if (L[e] > 3) y[i].hmask[e % 32] |= uint8_t(1 << (e / 32));
            L2[e] = uint8_t(L[e] & 3);
        }
        pack_2bit(L2, y[i].qs);
    }
}

// ggml-quants.c quantize_row_q4_K_ref
void quantize_row_q4_K_ref(const float* x, void* vy, int64_t n) {
    block_q4_K* y = static_cast<block_q4_K*>(vy);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        quantize_superblock_q45_K(x, y[i], L, 15, -1.f, 20);
        // 64-element chunk c: qs[32c + l] = L[64c + l] | L[64c + l + 32] << 4
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y[i].qs[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + l + 32] << 4));
    }
}

// ggml-quants.c quantize_row_q5_K_ref
void quantize_row_q5_K_ref(const float* x, void* vy, int64_t n) {
    block_q5_K* y = static_cast<block_q5_K*>(vy);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        quantize_superblock_q45_K(x, y[i], L, 31, -0.5f, 15);
        // Low 4 bits as Q4_K's qs; the fifth bit of element 64c + l (+32) is bit 2c (2c+1) of qh[l].
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

// ggml-quants.c quantize_row_q6_K_ref
void quantize_row_q6_K_ref(const float* x, void* vy, int64_t n) {
    block_q6_K* y = static_cast<block_q6_K*>(vy);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            const float abs_scale = std::fabs(scales[ib]);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {  // (near) all-zero block: all bytes zero
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

        // Half h, byte l: ql[64h + l] = q(l) | q(l+64) << 4, ql[64h + l + 32] = q(l+32) | q(l+96) << 4 (low
        // nibbles), qh[32h + l] = the top 2 bits of q(l + 32t) in bits 2t..2t+1.
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

// ggml-quants.c quantize_row_q8_K_ref
void quantize_row_q8_K_ref(const float* x, void* vy, int64_t n) {
    block_q8_K* y = static_cast<block_q8_K*>(vy);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            // ggml leaves bsums unwritten here; we zero them (they are the true sums of the zero qs).
            std::memset(&y[i], 0, sizeof(block_q8_K));
            continue;
        }
        // -127 (not -128) keeps every q in -127..127, which the SIMD dot kernels rely on.
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; ++j) y[i].qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = int16_t(sum);
        }
        y[i].d = 1 / iscale;
    }
}

}  // namespace qrt
