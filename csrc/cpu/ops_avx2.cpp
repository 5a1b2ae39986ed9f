// AVX2 versions of the ops that cost time per token (cpu/ops.h): silu_mul and attention_head.
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

float hmax8(__m256 x) {
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

__m256 load_half8(const half_bits* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// One (e^x) for a scalar through the vector path, for the tails.
float exp1(float x) {
    return _mm256_cvtss_f32(exp8(_mm256_set1_ps(x)));
}

}  // namespace

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

// scores[t] = scale * q.K[t], then p = e^(scores - max), out = (sum_t p[t] V[t]) / sum_t p[t]. Per token the
// dot over head_dim runs in two 8-lane accumulators; V is accumulated in head_dim/8 vectors.
void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores) {
    const int hd = kv.head_dim, bs = kv.block_size, nv = hd / 8;
    const int64_t block_stride = int64_t(kv.n_kv_head) * bs * hd;  // halves per physical block
    const int64_t head_offset = int64_t(kv_head) * bs * hd;
    __m256 qv[kMaxHeadDim / 8];
    for (int v = 0; v < nv; ++v) qv[v] = _mm256_loadu_ps(q + 8 * v);

    __m256 vmax = _mm256_set1_ps(-__builtin_inff());
    for (int t0 = 0; t0 < n_kv; t0 += bs) {
        const half_bits* kb = kv.k + kv.block_table[t0 / bs] * block_stride + head_offset;
        const int nt = n_kv - t0 < bs ? n_kv - t0 : bs;
        for (int t = 0; t < nt; ++t) {
            const half_bits* k = kb + int64_t(t) * hd;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int v = 0;
            for (; v + 2 <= nv; v += 2) {
                a0 = _mm256_fmadd_ps(qv[v], load_half8(k + 8 * v), a0);
                a1 = _mm256_fmadd_ps(qv[v + 1], load_half8(k + 8 * v + 8), a1);
            }
            if (v < nv) a0 = _mm256_fmadd_ps(qv[v], load_half8(k + 8 * v), a0);
            const float s = hsum8(_mm256_add_ps(a0, a1)) * scale;
            scores[t0 + t] = s;
            vmax = _mm256_max_ps(vmax, _mm256_set1_ps(s));
        }
    }
    const float max = hmax8(vmax);

    __m256 vsum = _mm256_setzero_ps();
    const __m256 m = _mm256_set1_ps(max);
    int t = 0;
    for (; t + 8 <= n_kv; t += 8) {
        const __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + t), m));
        _mm256_storeu_ps(scores + t, p);
        vsum = _mm256_add_ps(vsum, p);
    }
    float sum = hsum8(vsum);
    for (; t < n_kv; ++t) sum += scores[t] = exp1(scores[t] - max);

    __m256 o[kMaxHeadDim / 8];
    for (int v = 0; v < nv; ++v) o[v] = _mm256_setzero_ps();
    for (int t0 = 0; t0 < n_kv; t0 += bs) {
        const half_bits* vb = kv.v + kv.block_table[t0 / bs] * block_stride + head_offset;
        const int nt = n_kv - t0 < bs ? n_kv - t0 : bs;
        for (int tt = 0; tt < nt; ++tt) {
            const __m256 p = _mm256_set1_ps(scores[t0 + tt]);
            const half_bits* vr = vb + int64_t(tt) * hd;
            for (int v = 0; v < nv; ++v) o[v] = _mm256_fmadd_ps(p, load_half8(vr + 8 * v), o[v]);
        }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int v = 0; v < nv; ++v) _mm256_storeu_ps(out + 8 * v, _mm256_mul_ps(o[v], inv));
}

}  // namespace qrt::avx2

#pragma GCC pop_options

#endif  // QRT_HAVE_AVX2
