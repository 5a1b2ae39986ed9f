// AVX2 versions of the ops that cost time per token (cpu/ops.h): silu_mul and attention_head(s).
//
// This file is compiled with the engine's baseline flags; the functions below get AVX2/FMA/F16C through a
// target pragma placed after every #include, so no inline function from a shared header is compiled with
// AVX2 here (the rule in kernels/dispatch.h), and nothing here calls one. ops.cpp calls these only when
// active_isa() is Avx2.
//
// exp is Cephes' expf polynomial (as in ggml's and avx_mathfun's vector exps): x = n*ln2 + r with |r| <=
// ln2/2, e^r by a degree-6 polynomial, 2^n through the exponent bits; about 2 ulp from expf on [-87, 88].
#include <immintrin.h>

#include <cstdint>

#include "cpu/ops.h"
#include "format/legacy.h"

#if defined(QRT_HAVE_AVX2)

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace qrt::avx2 {

namespace {

__m256 exp8(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365447505531f));  // e^x >= the smallest normal float
    const __m256 n =
        _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

float hsum8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

float hmax4(__m128 r) {
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// The lane sums of a, b, c, d: [sum a, sum b, sum c, sum d], each ((0+1) + (2+3)) + ((4+5) + (6+7)).
__m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

__m256 load_half8(const half_bits* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Sliding windows (PagedKv::window): the four scores of a step of nk <= KB keys from t, laid out as
// reduce4 left them (lane j holds key t + j % KB, or key t where j % KB >= nk), set to -inf where the key
// lies before `first`, so that neither the max nor the sum sees them.
template <int KB>
__m128 mask_before(__m128 sc, int t, int nk, int first) {
    if (t >= first) return sc;
    auto key = [&](int j) { return j % KB < nk ? t + j % KB : t; };
    const __m128i keys = _mm_setr_epi32(key(0), key(1), key(2), key(3));
    const __m128 masked = _mm_castsi128_ps(_mm_cmplt_epi32(keys, _mm_set1_epi32(first)));
    return _mm_blendv_ps(sc, _mm_set1_ps(-__builtin_inff()), masked);
}

// One (e^x) for a scalar through the vector path, for the tails.
float exp1(float x) {
    return _mm256_cvtss_f32(exp8(_mm256_set1_ps(x)));
}

// The unnormalized softmax of one head's n scores, in place: sc[t] = e^(sc[t] - max), max the largest lane
// of vmax; returns 1 / sum_t sc[t]. Scores before `first` (masked, -inf) become exactly 0 (exp8 clamps at
// the smallest normal float, which cannot change a sum that holds e^0 = 1).
float softmax_exp(float* sc, int n, __m128 vmax, int first = 0) {
    const float max = hmax4(vmax);
    __m256 vsum = _mm256_setzero_ps();
    const __m256 m = _mm256_set1_ps(max);
    int t = 0;
    for (; t + 8 <= n; t += 8) {
        const __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + t), m));
        _mm256_storeu_ps(sc + t, p);
        vsum = _mm256_add_ps(vsum, p);
    }
    float sum = hsum8(vsum);
    for (; t < n; ++t) sum += sc[t] = exp1(sc[t] - max);
    for (t = 0; t < first; ++t) sc[t] = 0.0f;
    return 1.0f / sum;
}

// G query heads that read the same KV head (GQA), each exactly as attention_head computes it alone:
// scores[t] = scale * q.K[t], then p = e^(scores - max), out = (sum_t p[t] V[t]) / sum_t p[t]. Per token the
// dot over head_dim runs in one 8-lane accumulator; V is accumulated in head_dim/8 vectors. Each K and V
// row is widened from fp16 once for the G heads; V is taken 4 vectors (32 dims) at a time so the G heads'
// accumulators stay in registers. q, out: [G][head_dim]; scores: [G][n_kv].
template <int G>
void attention_group(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                     float* scores) {
    const int hd = kv.head_dim, bs = kv.block_size, nv = hd / 8;
    const int64_t block_stride = int64_t(kv.n_kv_head) * bs * hd;  // halves per physical block
    const int64_t head_offset = int64_t(kv_head) * bs * hd;

    // Scores a few keys at a time: one accumulator per (head, key) over head_dim, then the keys' sums
    // side by side from one hadd tree (reduce4), instead of a horizontal sum per score. A key's score is the
    // same arithmetic whichever group it falls in (a short group repeats its keys in the spare lanes).
    constexpr int KB = G >= 4 ? 2 : 4;  // keys per step: G*KB accumulators in registers
    const int first = kv.first_key(n_kv);
    __m128 vmax[G];
    for (int g = 0; g < G; ++g) vmax[g] = _mm_set1_ps(-__builtin_inff());
    for (int t0 = 0; t0 < n_kv; t0 += bs) {
        const half_bits* kb = kv.k16() + kv.block_table[t0 / bs] * block_stride + head_offset;
        const int nt = n_kv - t0 < bs ? n_kv - t0 : bs;
        for (int t = 0; t < nt; t += KB) {
            const int nk = nt - t < KB ? nt - t : KB;
            __m256 a[G][KB];
            for (int g = 0; g < G; ++g)
                for (int i = 0; i < KB; ++i) a[g][i] = _mm256_setzero_ps();
            for (int v = 0; v < nv; ++v)
                for (int i = 0; i < KB; ++i) {
                    const __m256 k = load_half8(kb + int64_t(t + (i < nk ? i : 0)) * hd + 8 * v);
                    for (int g = 0; g < G; ++g)
                        a[g][i] = _mm256_fmadd_ps(_mm256_loadu_ps(q + g * hd + 8 * v), k, a[g][i]);
                }
            for (int g = 0; g < G; ++g) {
                const __m128 sc =
                    mask_before<KB>(_mm_mul_ps(KB == 4 ? reduce4(a[g][0], a[g][1], a[g][2 % KB], a[g][3 % KB])
                                                       : reduce4(a[g][0], a[g][1], a[g][0], a[g][1]),
                                               _mm_set1_ps(scale)),
                                    t0 + t, nk, first);
                vmax[g] = _mm_max_ps(vmax[g], sc);
                alignas(16) float out4[4];
                _mm_store_ps(out4, sc);
                for (int i = 0; i < nk; ++i) scores[g * n_kv + t0 + t + i] = out4[i];
            }
        }
    }

    float inv_sum[G];
    for (int g = 0; g < G; ++g) inv_sum[g] = softmax_exp(scores + g * n_kv, n_kv, vmax[g], first);

    for (int v0 = 0; v0 < nv; v0 += 4) {  // 4 vectors of V at a time
        const int nw = nv - v0 < 4 ? nv - v0 : 4;
        __m256 o[G][4];
        for (int g = 0; g < G; ++g)
            for (int w = 0; w < 4; ++w) o[g][w] = _mm256_setzero_ps();
        for (int t0 = 0; t0 < n_kv; t0 += bs) {
            const half_bits* vb = kv.v16() + kv.block_table[t0 / bs] * block_stride + head_offset + 8 * v0;
            const int nt = n_kv - t0 < bs ? n_kv - t0 : bs;
            for (int tt = 0; tt < nt; ++tt) {
                const half_bits* vr = vb + int64_t(tt) * hd;
                if (nw == 4) {
                    __m256 vv[4];
                    for (int w = 0; w < 4; ++w) vv[w] = load_half8(vr + 8 * w);
                    for (int g = 0; g < G; ++g) {
                        const __m256 p = _mm256_set1_ps(scores[g * n_kv + t0 + tt]);
                        for (int w = 0; w < 4; ++w) o[g][w] = _mm256_fmadd_ps(p, vv[w], o[g][w]);
                    }
                } else {
                    for (int w = 0; w < nw; ++w) {
                        const __m256 vv = load_half8(vr + 8 * w);
                        for (int g = 0; g < G; ++g)
                            o[g][w] =
                                _mm256_fmadd_ps(_mm256_set1_ps(scores[g * n_kv + t0 + tt]), vv, o[g][w]);
                    }
                }
            }
        }
        for (int g = 0; g < G; ++g) {
            const __m256 inv = _mm256_set1_ps(inv_sum[g]);
            for (int w = 0; w < nw; ++w)
                _mm256_storeu_ps(out + g * hd + 8 * (v0 + w), _mm256_mul_ps(o[g][w], inv));
        }
    }
}

// The tile's K or V rows are widened a chunk of keys at a time into 16 KiB of floats: whole blocks, or a
// block in pieces where one does not fit.
constexpr int kChunkFloats = 4096;

// The end of the chunk of keys that starts at c (at most n_max): as many whole blocks as fit, or where a
// block does not fit, its next `keys` (a multiple of 4, so that no step of attention_group straddles two
// chunks).
int chunk_end(int c, int n_max, int bs, int hd) {
    const int keys = kChunkFloats / hd / 4 * 4;  // >= 16
    const int end =
        bs <= keys ? c + keys / bs * bs : (c + keys < (c / bs + 1) * bs ? c + keys : (c / bs + 1) * bs);
    return end < n_max ? end : n_max;
}

// One Q8_0 block (format/legacy.h) as 32 floats, qs[j] * d as dequantize_block_q8_0 computes them.
void dequantize_q8_0(float* dst, const block_q8_0& b) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b.d));
    for (int j = 0; j < 32; j += 8) {
        const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + j));
        _mm256_store_ps(dst + j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d));
    }
}

// One Q4_0 block as 32 floats, (nibble - 8) * d as dequantize_block_q4_0: low nibbles are values 0..15,
// high nibbles 16..31.
void dequantize_q4_0(float* dst, const block_q4_0& b) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(b.d));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    const __m128i m4 = _mm_set1_epi8(0x0F), m8 = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), m8);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), m8);
    auto put = [&](float* y, __m128i x8) {
        _mm256_store_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x8)), d));
    };
    put(dst, lo);
    put(dst + 8, _mm_srli_si128(lo, 8));
    put(dst + 16, hi);
    put(dst + 24, _mm_srli_si128(hi, 8));
}

// Widens keys [c, e) of kv_head's K or V (pool: kv.k or kv.v, of `type`) to rows [e - c][hd]: f16 rows
// converted, Q8_0 / Q4_0 rows dequantized a 32-value block at a time (the floats the reference's
// dequantize_block gives).
void widen(float* rows, const uint8_t* pool, TypeId type, const PagedKv& kv, int kv_head, int c, int e) {
    const int hd = kv.head_dim, bs = kv.block_size;
    const int64_t row = kv_row_bytes(type, hd);
    const int64_t block_stride = int64_t(kv.n_kv_head) * bs * row;  // bytes per physical block
    for (int t = c; t < e;) {
        const int n = (t / bs + 1) * bs < e ? (t / bs + 1) * bs - t : e - t;  // keys left in t's block
        const uint8_t* src =
            pool + kv.block_table[t / bs] * block_stride + (int64_t(kv_head) * bs + t % bs) * row;
        float* dst = rows + int64_t(t - c) * hd;
        if (type == TypeId::F16) {
            const half_bits* h = reinterpret_cast<const half_bits*>(src);
            for (int j = 0; j < n * hd; j += 8) _mm256_store_ps(dst + j, load_half8(h + j));
        } else if (type == TypeId::Q8_0) {  // rows of hd / 32 blocks, back to back: n * hd / 32 blocks
            const block_q8_0* b = reinterpret_cast<const block_q8_0*>(src);
            for (int j = 0; j < n * hd / 32; ++j) dequantize_q8_0(dst + 32 * j, b[j]);
        } else {
            const block_q4_0* b = reinterpret_cast<const block_q4_0*>(src);
            for (int j = 0; j < n * hd / 32; ++j) dequantize_q4_0(dst + 32 * j, b[j]);
        }
        t += n;
    }
}

// attention_group for n_tok <= kAttentionTile consecutive query tokens, token i's G heads at q + i * stride
// attending over the first n_kv + i keys. Each chunk of K and V rows is widened once for the tile and then
// read by every token from L1, instead of every token loading and widening its whole prefix. Per token and
// head the arithmetic is attention_group's, in its order: the same key steps (KB keys from each block's
// start, a short step repeating its first key), the same softmax_exp, and V summed in key order, the sums
// kept in acc between chunks. scores: [n_tok][G][n_kv + n_tok - 1].
template <int G>
void attention_group_tile(float* out, const float* q, int64_t stride, int n_tok, const PagedKv& kv,
                          int kv_head, int n_kv, float scale, float* scores) {
    const int hd = kv.head_dim, bs = kv.block_size, nv = hd / 8;
    const int n_max = n_kv + n_tok - 1;  // keys of the last token
    const int64_t ld = n_max;            // floats between score rows
    alignas(32) float rows[kChunkFloats];

    constexpr int KB = G >= 4 ? 2 : 4;  // as attention_group
    __m128 vmax[kAttentionTile][G];
    for (int i = 0; i < n_tok; ++i)
        for (int g = 0; g < G; ++g) vmax[i][g] = _mm_set1_ps(-__builtin_inff());
    for (int c = 0; c < n_max;) {
        const int ce = chunk_end(c, n_max, bs, hd);
        widen(rows, kv.k, kv.k_type, kv, kv_head, c, ce);
        for (int i = 0; i < n_tok; ++i) {
            const int n_i = n_kv + i;  // token i's keys
            const float* qi = q + i * stride;
            float* sc = scores + i * G * ld;
            // Steps of KB keys from each block's start, the last of a block (or of the token) short, as
            // there.
            for (int t = c, nk; t < ce && t < n_i; t += nk) {
                const int lim = (t / bs + 1) * bs < n_i ? (t / bs + 1) * bs : n_i;
                nk = lim - t < KB ? lim - t : KB;
                const float* kr = rows + (t - c) * hd;
                __m256 a[G][KB];
                for (int g = 0; g < G; ++g)
                    for (int j = 0; j < KB; ++j) a[g][j] = _mm256_setzero_ps();
                for (int v = 0; v < nv; ++v)
                    for (int j = 0; j < KB; ++j) {
                        const __m256 k = _mm256_load_ps(kr + (j < nk ? j : 0) * hd + 8 * v);
                        for (int g = 0; g < G; ++g)
                            a[g][j] = _mm256_fmadd_ps(_mm256_loadu_ps(qi + g * hd + 8 * v), k, a[g][j]);
                    }
                for (int g = 0; g < G; ++g) {
                    const __m128 s4 = mask_before<KB>(
                        _mm_mul_ps(KB == 4 ? reduce4(a[g][0], a[g][1], a[g][2 % KB], a[g][3 % KB])
                                           : reduce4(a[g][0], a[g][1], a[g][0], a[g][1]),
                                   _mm_set1_ps(scale)),
                        t, nk, kv.first_key(n_i));
                    vmax[i][g] = _mm_max_ps(vmax[i][g], s4);
                    float* dst = sc + g * ld + t;
                    if (nk == 4) {
                        _mm_storeu_ps(dst, s4);
                    } else {
                        alignas(16) float out4[4];
                        _mm_store_ps(out4, s4);
                        for (int j = 0; j < nk; ++j) dst[j] = out4[j];
                    }
                }
            }
        }
        c = ce;
    }

    float inv_sum[kAttentionTile][G];
    for (int i = 0; i < n_tok; ++i)
        for (int g = 0; g < G; ++g)
            inv_sum[i][g] =
                softmax_exp(scores + (i * G + g) * ld, n_kv + i, vmax[i][g], kv.first_key(n_kv + i));

    alignas(32) float acc[kAttentionTile * G * kMaxHeadDim];  // [n_tok][G][hd]: V sums so far
    for (int e = 0; e < n_tok * G * hd; e += 8) _mm256_store_ps(acc + e, _mm256_setzero_ps());
    for (int c = 0; c < n_max;) {
        const int ce = chunk_end(c, n_max, bs, hd);
        widen(rows, kv.v, kv.v_type, kv, kv_head, c, ce);
        for (int i = 0; i < n_tok; ++i) {
            const int end = ce < n_kv + i ? ce : n_kv + i;  // token i's keys in this chunk: [c, end)
            const float* p = scores + i * G * ld;           // head g's weight of key t: p[g * ld + t]
            float* ai = acc + i * G * hd;
            int v0 = 0;
            for (; v0 + 4 <= nv; v0 += 4) {  // 4 vectors of V at a time
                __m256 o[G][4];
                for (int g = 0; g < G; ++g)
                    for (int w = 0; w < 4; ++w) o[g][w] = _mm256_load_ps(ai + g * hd + 8 * (v0 + w));
                for (int t = c; t < end; ++t) {
                    const float* vr = rows + (t - c) * hd + 8 * v0;
                    __m256 vv[4];
                    for (int w = 0; w < 4; ++w) vv[w] = _mm256_load_ps(vr + 8 * w);
                    for (int g = 0; g < G; ++g) {
                        const __m256 pg = _mm256_set1_ps(p[g * ld + t]);
                        for (int w = 0; w < 4; ++w) o[g][w] = _mm256_fmadd_ps(pg, vv[w], o[g][w]);
                    }
                }
                for (int g = 0; g < G; ++g)
                    for (int w = 0; w < 4; ++w) _mm256_store_ps(ai + g * hd + 8 * (v0 + w), o[g][w]);
            }
            for (; v0 < nv; ++v0)  // the last head_dim % 32 dimensions, a vector at a time
                for (int g = 0; g < G; ++g) {
                    __m256 o = _mm256_load_ps(ai + g * hd + 8 * v0);
                    for (int t = c; t < end; ++t)
                        o = _mm256_fmadd_ps(_mm256_set1_ps(p[g * ld + t]),
                                            _mm256_load_ps(rows + (t - c) * hd + 8 * v0), o);
                    _mm256_store_ps(ai + g * hd + 8 * v0, o);
                }
        }
        c = ce;
    }
    for (int i = 0; i < n_tok; ++i)
        for (int g = 0; g < G; ++g) {
            const __m256 inv = _mm256_set1_ps(inv_sum[i][g]);
            for (int v = 0; v < nv; ++v)
                _mm256_storeu_ps(out + i * stride + g * hd + 8 * v,
                                 _mm256_mul_ps(_mm256_load_ps(acc + (i * G + g) * hd + 8 * v), inv));
        }
}

}  // namespace

void gelu_mul(float* gate, const float* up, int64_t n) {
    // g/2 (1 + tanh(y)) = g / (1 + e^(-2y)), y = sqrt(2/pi) (g + 0.044715 g^3)
    const __m256 one = _mm256_set1_ps(1.0f), c1 = _mm256_set1_ps(-2.0f * 0.79788456080286535588f),
                 c3 = _mm256_set1_ps(0.044715f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 y = _mm256_mul_ps(c1, _mm256_fmadd_ps(_mm256_mul_ps(c3, g), _mm256_mul_ps(g, g), g));
        const __m256 e = exp8(y);
        _mm256_storeu_ps(gate + i,
                         _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + exp1(-2.0f * 0.79788456080286535588f * (g + 0.044715f * g * g * g))) * up[i];
    }
}

void silu_mul(float* gate, const float* up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(gate + i,
                         _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; ++i) gate[i] = gate[i] / (1.0f + exp1(-gate[i])) * up[i];
}

namespace {

// n_tok consecutive query tokens' n_q heads through attention_group_tile, the heads in groups of up to 4:
// the one kernel for a quantized cache (whose rows are dequantized into the chunk buffer for every n_tok,
// decode included, so that a token's arithmetic never depends on the tile it is in).
void group_tiles(float* out, const float* q, int64_t stride, int n_tok, int n_q, const PagedKv& kv,
                 int kv_head, int n_kv, float scale, float* scores) {
    const int hd = kv.head_dim;
    for (; n_q >= 4; n_q -= 4, q += 4 * hd, out += 4 * hd)
        attention_group_tile<4>(out, q, stride, n_tok, kv, kv_head, n_kv, scale, scores);
    if (n_q == 3) attention_group_tile<3>(out, q, stride, n_tok, kv, kv_head, n_kv, scale, scores);
    if (n_q == 2) attention_group_tile<2>(out, q, stride, n_tok, kv, kv_head, n_kv, scale, scores);
    if (n_q == 1) attention_group_tile<1>(out, q, stride, n_tok, kv, kv_head, n_kv, scale, scores);
}

}  // namespace

void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores) {
    if (kv.quantized()) return group_tiles(out, q, kv.head_dim, 1, 1, kv, kv_head, n_kv, scale, scores);
    attention_group<1>(out, q, kv, kv_head, n_kv, scale, scores);
}

void attention_heads(float* out, const float* q, int n_q, const PagedKv& kv, int kv_head, int n_kv,
                     float scale, float* scores) {
    if (kv.quantized()) return group_tiles(out, q, kv.head_dim, 1, n_q, kv, kv_head, n_kv, scale, scores);
    for (; n_q >= 4; n_q -= 4, q += 4 * kv.head_dim, out += 4 * kv.head_dim)
        attention_group<4>(out, q, kv, kv_head, n_kv, scale, scores);
    if (n_q == 3) attention_group<3>(out, q, kv, kv_head, n_kv, scale, scores);
    if (n_q == 2) attention_group<2>(out, q, kv, kv_head, n_kv, scale, scores);
    if (n_q == 1) attention_group<1>(out, q, kv, kv_head, n_kv, scale, scores);
}

void attention_tile(float* out, const float* q, int64_t stride, int n_tok, int n_q, const PagedKv& kv,
                    int kv_head, int n_kv, float scale, float* scores) {
    if (n_tok == 1 && !kv.quantized())
        return avx2::attention_heads(out, q, n_q, kv, kv_head, n_kv, scale, scores);  // decode
    group_tiles(out, q, stride, n_tok, n_q, kv, kv_head, n_kv, scale, scores);
}

}  // namespace qrt::avx2

#pragma GCC pop_options

#endif  // QRT_HAVE_AVX2
