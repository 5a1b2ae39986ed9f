#include "cpu/ops.h"

#include <cmath>
#include <mutex>

#include "cpu/isa.h"
#include "format/legacy.h"

namespace qrt {

namespace {

// fp16 -> fp32 for all 65536 bit patterns (256 KiB), built on first use: attention converts every cached
// K and V element it reads, and a lookup is several times cheaper than the bit manipulation.
const float* fp16_table() {
    static float table[65536];
    static std::once_flag filled;
    std::call_once(filled, [] {
        for (uint32_t h = 0; h < 65536; ++h) table[h] = fp16_to_fp32(half_bits(h));
    });
    return table;
}

}  // namespace

float dot(const float* a, const float* b, int64_t n) {
    float s[16] = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; ++j) s[j] += a[i + j] * b[i + j];
    for (int j = 8; j > 0; j /= 2)
        for (int k = 0; k < j; ++k) s[k] += s[k + j];
    float sum = s[0];
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void softmax(float* x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
    }
    const float inv = float(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul_ref(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void silu_mul(float* gate, const float* up, int64_t n) {
#if defined(QRT_HAVE_AVX2)
    if (active_isa() == Isa::Avx2) return avx2::silu_mul(gate, up, n);
#endif
#if defined(QRT_HAVE_NEON)
    if (active_isa() == Isa::Neon) return neon::silu_mul(gate, up, n);
#endif
    silu_mul_ref(gate, up, n);
}

void hadamard(float* x, int64_t n_rows, int n) {
    const float norm = 1.0f / std::sqrt(float(n));
    for (int64_t r = 0; r < n_rows; ++r, x += n) {
        for (int h = 1; h < n; h *= 2)
            for (int i = 0; i < n; i += 2 * h)
                for (int j = i; j < i + h; ++j) {
                    const float a = x[j], b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
        for (int i = 0; i < n; ++i) x[i] *= norm;
    }
}

void add(float* out, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] += b[i];
}

void rope(float* x, int n_head, int head_dim, int n_rot, int32_t pos, const float* inv_freq, float freq_scale,
          float mscale, bool neox) {
    const int half = n_rot / 2;
    // The angles of the last (pos, freq_scale, inv_freq values) this thread saw: the same values recomputed.
    constexpr int kCached = 256;
    thread_local struct {
        int32_t pos = -1;
        float freq_scale = 0;
        int half = 0;
        float inv_freq[kCached], cos[kCached], sin[kCached];
    } last;
    const bool cached = half <= kCached;
    bool hit = cached && last.pos == pos && last.freq_scale == freq_scale && last.half == half;
    for (int i = 0; hit && i < half; ++i) hit = last.inv_freq[i] == inv_freq[i];
    if (cached && !hit) {
        for (int i = 0; i < half; ++i) {
            const double theta = double(pos) * double(freq_scale) * double(inv_freq[i]);
            last.inv_freq[i] = inv_freq[i];
            last.cos[i] = float(std::cos(theta));
            last.sin[i] = float(std::sin(theta));
        }
        last.pos = pos, last.freq_scale = freq_scale, last.half = half;
    }
    for (int i = 0; i < half; ++i) {
        float c, s;
        if (cached) {
            c = last.cos[i], s = last.sin[i];
        } else {
            const double theta = double(pos) * double(freq_scale) * double(inv_freq[i]);
            c = float(std::cos(theta)), s = float(std::sin(theta));
        }
        if (mscale != 1.0f) c *= mscale, s *= mscale;
        // neox: dimensions i and i + half; norm: dimensions 2i and 2i + 1
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        for (int h = 0; h < n_head; ++h) {
            float* xh = x + int64_t(h) * head_dim;
            const float x0 = xh[a], x1 = xh[b];
            xh[a] = x0 * c - x1 * s;
            xh[b] = x0 * s + x1 * c;
        }
    }
}

void gelu_mul_ref(float* gate, const float* up, int64_t n) {
    constexpr float kSqrt2OverPi = 0.79788456080286535588f;
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
    }
}

void gelu_mul(float* gate, const float* up, int64_t n) {
#if defined(QRT_HAVE_AVX2)
    if (active_isa() == Isa::Avx2) return avx2::gelu_mul(gate, up, n);
#endif
    gelu_mul_ref(gate, up, n);
}

void attention_head(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                    float* scores) {
#if defined(QRT_HAVE_AVX2)
    if (active_isa() == Isa::Avx2 && kv.head_dim % 8 == 0 && kv.head_dim <= avx2::kMaxHeadDim)
        return avx2::attention_head(out, q, kv, kv_head, n_kv, scale, scores);
#endif
#if defined(QRT_HAVE_NEON)
    if (active_isa() == Isa::Neon && kv.head_dim % 4 == 0 && kv.head_dim <= neon::kMaxHeadDim)
        return neon::attention_head(out, q, kv, kv_head, n_kv, scale, scores);
#endif
    attention_head_ref(out, q, kv, kv_head, n_kv, scale, scores);
}

void attention_heads(float* out, const float* q, int n_q, const PagedKv& kv, int kv_head, int n_kv,
                     float scale, float* scores) {
#if defined(QRT_HAVE_AVX2)
    if (active_isa() == Isa::Avx2 && kv.head_dim % 8 == 0 && kv.head_dim <= avx2::kMaxHeadDim)
        return avx2::attention_heads(out, q, n_q, kv, kv_head, n_kv, scale, scores);
#endif
    for (int h = 0; h < n_q; ++h)
        attention_head(out + int64_t(h) * kv.head_dim, q + int64_t(h) * kv.head_dim, kv, kv_head, n_kv, scale,
                       scores);
}

void attention_tile(float* out, const float* q, int64_t stride, int n_tok, int n_q, const PagedKv& kv,
                    int kv_head, int n_kv, float scale, float* scores) {
#if defined(QRT_HAVE_AVX2)
    if (active_isa() == Isa::Avx2 && kv.head_dim % 8 == 0 && kv.head_dim <= avx2::kMaxHeadDim) {
        for (int i = 0; i < n_tok; i += kAttentionTile)
            avx2::attention_tile(out + i * stride, q + i * stride, stride,
                                 n_tok - i < kAttentionTile ? n_tok - i : kAttentionTile, n_q, kv, kv_head,
                                 n_kv + i, scale, scores);
        return;
    }
#endif
    for (int i = 0; i < n_tok; ++i)
        attention_heads(out + i * stride, q + i * stride, n_q, kv, kv_head, n_kv + i, scale, scores);
}

int64_t kv_row_bytes(TypeId type, int head_dim) {
    const TypeTraits& t = traits(type);
    return int64_t(head_dim) / t.block_size * int64_t(t.type_size);
}

namespace {

// Values [d0, d0 + n) of token t's row of kv_head in `pool` (of `type`) as floats, n <= 32 and, for
// quantized types, d0 a multiple of 32 and n = 32: f16 through the table, Q8_0 / Q4_0 through the format
// reference's dequantize_block (format/legacy.h).
void load_ref(float* dst, const uint8_t* pool, TypeId type, const PagedKv& kv, int kv_head, int t, int d0,
              int n) {
    const int bs = kv.block_size;
    const int64_t row = kv_row_bytes(type, kv.head_dim);
    const uint8_t* src =
        pool + (int64_t(kv.block_table[t / bs]) * kv.n_kv_head * bs + int64_t(kv_head) * bs + t % bs) * row;
    if (type == TypeId::Q8_0)
        return dequantize_block_q8_0(reinterpret_cast<const block_q8_0*>(src)[d0 / 32], dst);
    if (type == TypeId::Q4_0)
        return dequantize_block_q4_0(reinterpret_cast<const block_q4_0*>(src)[d0 / 32], dst);
    const float* f16 = fp16_table();
    const half_bits* h = reinterpret_cast<const half_bits*>(src) + d0;
    for (int d = 0; d < n; ++d) dst[d] = f16[h[d]];
}

}  // namespace

void attention_head_ref(float* out, const float* q, const PagedKv& kv, int kv_head, int n_kv, float scale,
                        float* scores) {
    const int hd = kv.head_dim;
    float x[32];
    const int first = kv.first_key(n_kv);  // keys [first, n_kv)
    for (int t = first; t < n_kv; ++t) {
        float s = 0;
        for (int d0 = 0; d0 < hd; d0 += 32) {
            const int n = hd - d0 < 32 ? hd - d0 : 32;
            load_ref(x, kv.k, kv.k_type, kv, kv_head, t, d0, n);
            for (int d = 0; d < n; ++d) s += q[d0 + d] * x[d];
        }
        scores[t] = s * scale;
    }
    softmax(scores + first, n_kv - first);
    for (int d = 0; d < hd; ++d) out[d] = 0;
    for (int t = first; t < n_kv; ++t) {
        const float p = scores[t];
        for (int d0 = 0; d0 < hd; d0 += 32) {
            const int n = hd - d0 < 32 ? hd - d0 : 32;
            load_ref(x, kv.v, kv.v_type, kv, kv_head, t, d0, n);
            for (int d = 0; d < n; ++d) out[d0 + d] += p * x[d];
        }
    }
}

}  // namespace qrt
