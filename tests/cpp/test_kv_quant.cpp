// The quantized KV cache (kv/kv_cache.h with k_type / v_type Q8_0 or Q4_0) and attention over it (cpu/ops.h):
//  - KvCache stores each row as the format reference quantizes it, byte for byte, and sizes its pools by
//    the rows' bytes (Q8_0 34/64, Q4_0 18/64 of f16's);
//  - attention_head_ref over a quantized cache equals attention computed in double over the rows that
//    the format reference dequantizes (so the reference reads the right blocks of the right tokens);
//  - every ISA's attention kernels against the reference on random caches with scattered block tables,
//    across token-block and 32-value-block boundaries, with and without a sliding window, mixed K/V
//    types; attention_heads equal to attention_head per head and attention_tile equal to attention_heads
//    per token, bit for bit (what keeps greedy output independent of batching);
//  - bad types and head sizes are refused with a message naming them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/isa.h"
#include "cpu/ops.h"
#include "format/types.h"
#include "kv/kv_cache.h"

using namespace qrt;
using namespace qrt::testing;

namespace {

bool cpu_runs(Isa isa) {
    const CpuFeatures& f = cpu_features();
    if (isa == Isa::Avx2) return f.avx2 && f.fma && f.f16c;
    return isa != Isa::Neon || f.neon;
}

std::string name(TypeId t) {
    return kv_type_name(t);
}

// A paged K/V cache of n_blocks blocks of random rows, quantized by the format reference, a scattered block
// table, and the rows as the reference dequantizes them ([n_blocks][n_head][bs][hd], physical order).
struct RandomQuantKv {
    std::vector<uint8_t> k, v;
    std::vector<float> kf, vf;
    std::vector<int32_t> table;
    PagedKv view;
    RandomQuantKv(TypeId kt, TypeId vt, int n_blocks, int n_head, int bs, int hd, std::mt19937_64& rng)
        : table(size_t(n_blocks)) {
        auto fill = [&](TypeId type, std::vector<uint8_t>& bytes, std::vector<float>& rows) {
            const int64_t row = kv_row_bytes(type, hd), n_rows = int64_t(n_blocks) * n_head * bs;
            bytes.resize(size_t(n_rows * row));
            rows.resize(size_t(n_rows * hd));
            std::normal_distribution<float> normal;
            std::vector<float> x(static_cast<size_t>(hd));
            for (int64_t r = 0; r < n_rows; ++r) {
                const float spread = r % 7 == 0 ? 8.0f : 1.0f;  // some rows with outliers
                for (auto& e : x) e = normal(rng) * spread;
                traits(type).quantize_row_ref(x.data(), bytes.data() + r * row, hd);
                traits(type).dequantize_row(bytes.data() + r * row, rows.data() + r * hd, hd);
            }
        };
        fill(kt, k, kf);
        fill(vt, v, vf);
        for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = (b * 5 + 1) % n_blocks;
        view = PagedKv{k.data(), v.data(), table.data(), n_head, hd, bs};
        view.k_type = kt;
        view.v_type = vt;
    }
    // Token t's dequantized row of head h.
    const float* row(const std::vector<float>& rows, int h, int t) const {
        const int bs = view.block_size, hd = view.head_dim;
        return rows.data() + ((int64_t(table[size_t(t / bs)]) * view.n_kv_head + h) * bs + t % bs) * hd;
    }
};

const TypeId kPairs[][2] = {{TypeId::Q8_0, TypeId::Q8_0},
                            {TypeId::Q4_0, TypeId::Q4_0},
                            {TypeId::Q8_0, TypeId::F16},
                            {TypeId::F16, TypeId::Q4_0},
                            {TypeId::Q4_0, TypeId::Q8_0}};

void test_cache_storage(std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    for (TypeId type : {TypeId::Q8_0, TypeId::Q4_0}) {
        KvCacheShape s;
        s.n_layer = 2, s.n_kv_head = 3, s.head_dim = 64, s.n_ctx = 50, s.n_seq_max = 2;
        s.k_type = type, s.v_type = TypeId::F16;
        KvCacheShape f16 = s;
        f16.k_type = TypeId::F16;
        const uint64_t row = type == TypeId::Q8_0 ? 68 : 36;  // 2 blocks of 34 / 18 bytes
        check(KvCache::bytes_needed(s) == KvCache::bytes_needed(f16) / 2 / 128 * (128 + row),
              name(type) + " cache bytes: K rows of " + std::to_string(row) + " bytes, V rows of 128");
        s.v_type = type;
        check(KvCache::bytes_needed(s) * 128 == KvCache::bytes_needed(f16) * row,
              name(type) + " cache bytes are " + std::to_string(row) + "/128 of f16's");
        KvCache kv(s);
        check(kv.bytes() == KvCache::bytes_needed(s) && kv.k_pool_bytes() == kv.n_blocks() * 3 * 16 * row,
              name(type) + " pools sized by row bytes");
        // Tokens of two interleaved sequences: every row in the pool is the reference's quantization.
        std::vector<float> kin(3 * 64), vin(3 * 64);
        std::vector<std::vector<float>> kept[2];
        for (int step = 0; step < 3; ++step)
            for (int seq : {1, 0}) {
                const int n = 13, len = kv.seq_len(seq);
                kv.reserve(seq, n);
                for (int t = len; t < len + n; ++t) {
                    for (auto& e : kin) e = normal(rng);
                    for (auto& e : vin) e = normal(rng);
                    kept[seq].push_back(kin);
                    kept[seq].push_back(vin);
                    for (int l = 0; l < 2; ++l) kv.store(l, seq, t, kin.data(), vin.data());
                }
                kv.commit(seq, n);
            }
        bool same = true;
        std::vector<uint8_t> want(row);
        for (int seq : {0, 1})
            for (int l = 0; l < 2; ++l) {
                const PagedKv view = kv.view(l, seq);
                same = same && view.k_type == type && view.v_type == type;
                for (int t = 0; t < kv.seq_len(seq); ++t)
                    for (int h = 0; h < 3; ++h)
                        for (int which = 0; which < 2; ++which) {
                            const float* x = kept[seq][size_t(2 * t + which)].data() + h * 64;
                            traits(type).quantize_row_ref(x, want.data(), 64);
                            const uint8_t* pool = which == 0 ? view.k : view.v;
                            const uint8_t* got =
                                pool +
                                ((int64_t(view.block_table[t / 16]) * 3 + h) * 16 + t % 16) * int64_t(row);
                            same = same && std::memcmp(got, want.data(), row) == 0;
                        }
            }
        check(same, name(type) + " cache rows equal the reference quantization, read through the tables");
    }
    // bad types and head sizes
    KvCacheShape s;
    s.n_layer = 1, s.n_kv_head = 1, s.head_dim = 48, s.n_ctx = 16, s.n_seq_max = 1, s.k_type = TypeId::Q8_0;
    check_throws<std::invalid_argument>([&] { KvCache bad(s); }, "q8_0 with head_dim 48", "multiple of 32");
    s.head_dim = 64, s.k_type = TypeId::F16, s.v_type = TypeId::Q5_0;
    check_throws<std::invalid_argument>([&] { KvCache bad(s); }, "a Q5_0 cache",
                                        "not one of f16, q8_0, q4_0");
    check(kv_type_from_name("q4_0", "x") == TypeId::Q4_0 && kv_type_from_name("f16", "x") == TypeId::F16,
          "kv type names");
    check_throws<std::invalid_argument>([] { kv_type_from_name("q5_1", "kv_type_k"); }, "kv type name q5_1",
                                        "kv_type_k 'q5_1' is not a KV cache type; accepted: f16, q8_0, q4_0");
}

// hadamard against the explicit matrix H[i][j] = (-1)^popcount(i & j) / sqrt(n) (ggml_gen_hadamard's
// Sylvester construction in llama.cpp's llama-kv-cache.cpp) and H H = I.
void test_hadamard(std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    for (int n : {1, 2, 64, 128, 256}) {
        const int rows = 3;
        std::vector<float> x(size_t(rows * n)), y;
        for (auto& e : x) e = normal(rng);
        y = x;
        hadamard(y.data(), rows, n);
        double err = 0, back = 0;
        for (int r = 0; r < rows; ++r)
            for (int i = 0; i < n; ++i) {
                double want = 0;
                for (int j = 0; j < n; ++j)
                    want += (__builtin_popcount(unsigned(i & j)) % 2 ? -1.0 : 1.0) * x[size_t(r * n + j)];
                err = std::max(err, std::fabs(want / std::sqrt(double(n)) - y[size_t(r * n + i)]));
            }
        hadamard(y.data(), rows, n);
        for (size_t i = 0; i < x.size(); ++i) back = std::max(back, std::fabs(double(y[i]) - x[i]));
        check(err < 1e-5 && back < 1e-5, "hadamard n=" + std::to_string(n) + ": error " +
                                             std::to_string(err) + ", H H x - x " + std::to_string(back));
    }
}

// attention_head_ref against double-precision attention over the dequantized rows.
void test_reference(std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    int bad = 0, cases = 0;
    for (const auto& pair : kPairs)
        for (int hd : {32, 64, 96, 256})
            for (int n_kv : {1, 16, 17, 100}) {
                const int bs = 16, n_head = 2, n_blocks = (n_kv + bs - 1) / bs + 1;
                const RandomQuantKv cache(pair[0], pair[1], n_blocks, n_head, bs, hd, rng);
                PagedKv kv = cache.view;
                if (rng() % 2) kv.window = 1 + int(rng() % unsigned(n_kv + 4));
                std::vector<float> q(static_cast<size_t>(hd)), out(q.size()),
                    scores(static_cast<size_t>(n_kv));
                for (auto& x : q) x = normal(rng);
                const int head = int(rng() % n_head);
                attention_head_ref(out.data(), q.data(), kv, head, n_kv, 0.125f, scores.data());
                const int first = kv.first_key(n_kv);
                std::vector<double> p(static_cast<size_t>(n_kv)), want(static_cast<size_t>(hd));
                double max = -1e300, sum = 0;
                for (int t = first; t < n_kv; ++t) {
                    double s = 0;
                    for (int d = 0; d < hd; ++d) s += double(q[size_t(d)]) * cache.row(cache.kf, head, t)[d];
                    p[size_t(t)] = 0.125 * s;
                    max = std::max(max, p[size_t(t)]);
                }
                for (int t = first; t < n_kv; ++t) sum += p[size_t(t)] = std::exp(p[size_t(t)] - max);
                for (int t = first; t < n_kv; ++t)
                    for (int d = 0; d < hd; ++d)
                        want[size_t(d)] += p[size_t(t)] / sum * cache.row(cache.vf, head, t)[d];
                double err = 0, mag = 0;
                for (int d = 0; d < hd; ++d) {
                    err = std::max(err, std::fabs(out[size_t(d)] - want[size_t(d)]));
                    mag = std::max(mag, std::fabs(want[size_t(d)]));
                }
                ++cases;
                bad += !(err <= 1e-5 * (mag + 1e-3));
            }
    check(bad == 0,
          "attention_head_ref over quantized caches equals double attention over the dequantized "
          "rows: " +
              std::to_string(bad) + " of " + std::to_string(cases) + " differ");
}

using AttentionHeadFn = void (*)(float*, const float*, const PagedKv&, int, int, float, float*);
using AttentionHeadsFn = void (*)(float*, const float*, int, const PagedKv&, int, int, float, float*);
using AttentionTileFn = void (*)(float*, const float*, int64_t, int, int, const PagedKv&, int, int, float,
                                 float*);

// An ISA's attention_head against the reference; attention_heads (where given) equal to attention_head per
// head and attention_tile (where given) equal to attention_heads per token, bit for bit.
void test_kernels(const std::string& isa, AttentionHeadFn head_fn, AttentionHeadsFn heads_fn,
                  AttentionTileFn tile_fn, int max_tok, std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    int cases = 0, bad_ref = 0, bad_heads = 0, bad_tile = 0;
    std::string first_bad;
    for (const auto& pair : kPairs)
        for (int hd : {32, 64, 96, 128, 256})
            for (int bs : {16, 3, 20})
                for (int n_kv : {1, 5, 16, 17, 33, 100, 301}) {
                    const int n_tok = 1 + int(rng() % unsigned(max_tok)), n_q = 1 + int(rng() % 9);
                    const int n_head = 2, n_max = n_kv + n_tok - 1, n_blocks = (n_max + bs - 1) / bs + 2;
                    const RandomQuantKv cache(pair[0], pair[1], n_blocks, n_head, bs, hd, rng);
                    PagedKv kv = cache.view;
                    if (rng() % 3 == 0) kv.window = 1 + int(rng() % unsigned(n_max + 4));
                    const int head = int(rng() % n_head);
                    const std::string what = " k=" + name(pair[0]) + " v=" + name(pair[1]) +
                                             " hd=" + std::to_string(hd) + " bs=" + std::to_string(bs) +
                                             " n_kv=" + std::to_string(n_kv) +
                                             " window=" + std::to_string(kv.window);
                    ++cases;
                    // one head against the reference
                    std::vector<float> q(static_cast<size_t>(hd)), ref(q.size()), out(q.size()),
                        s(static_cast<size_t>(n_max));
                    for (auto& x : q) x = normal(rng) * 2.0f;
                    attention_head_ref(ref.data(), q.data(), kv, head, n_kv, 0.125f, s.data());
                    head_fn(out.data(), q.data(), kv, head, n_kv, 0.125f, s.data());
                    double err = 0, mag = 0, score_mag = 0;  // score_mag: the largest scale * sum |q_d k_d|
                    for (int d = 0; d < hd; ++d) {
                        err = std::max(err, std::fabs(double(out[size_t(d)]) - ref[size_t(d)]));
                        mag = std::max(mag, std::fabs(double(ref[size_t(d)])));
                    }
                    for (int t = 0; t < n_kv; ++t) {
                        double sum = 0;
                        for (int d = 0; d < hd; ++d)
                            sum += std::fabs(q[size_t(d)] * cache.row(cache.kf, head, t)[d]);
                        score_mag = std::max(score_mag, 0.125 * sum);
                    }
                    // Scores summed in another order differ by a few float ulps of the terms' magnitude, and
                    // the softmax passes a score's absolute error on as a relative one.
                    const double tol = (mag + 1e-3) * (1e-5 + 1e-6 * score_mag);
                    if (!(err <= tol) && bad_ref++ == 0)
                        first_bad =
                            what + ": error " + std::to_string(err) + ", bound " + std::to_string(tol);
                    if (!heads_fn) continue;
                    // a strided batch of n_tok tokens, each n_q heads (one GQA group at head offset 1 of 2
                    // n_q)
                    const int64_t stride = int64_t(2 * n_q) * hd, off = hd;
                    std::vector<float> qs(size_t(n_tok * stride)), tiled(qs.size(), -7.0f),
                        per(qs.size(), -7.0f);
                    const float qscale = rng() % 4 == 0 ? 40.0f : 2.0f;
                    for (auto& x : qs) x = normal(rng) * qscale;
                    std::vector<float> sh(size_t(std::min(n_q, kAttentionMaxGroup) * n_max)),
                        st(size_t(std::min(n_tok, kAttentionTile) * std::min(n_q, kAttentionMaxGroup) *
                                  n_max));
                    for (int i = 0; i < n_tok; ++i)
                        heads_fn(per.data() + off + i * stride, qs.data() + off + i * stride, n_q, kv, head,
                                 n_kv + i, 0.125f, sh.data());
                    bool same = true;
                    for (int h = 0; h < n_q; ++h) {
                        head_fn(out.data(), qs.data() + off + h * hd, kv, head, n_kv, 0.125f, s.data());
                        same = same && std::memcmp(out.data(), per.data() + off + h * hd,
                                                   sizeof(float) * size_t(hd)) == 0;
                    }
                    bad_heads += !same;
                    if (!tile_fn) continue;
                    tile_fn(tiled.data() + off, qs.data() + off, stride, n_tok, n_q, kv, head, n_kv, 0.125f,
                            st.data());
                    bad_tile += std::memcmp(tiled.data(), per.data(), sizeof(float) * tiled.size()) != 0;
                }
    check(bad_ref == 0,
          isa + " attention_head over quantized caches against the reference: " + std::to_string(bad_ref) +
              " of " + std::to_string(cases) + " differ, first" + first_bad);
    if (heads_fn)
        check(bad_heads == 0, isa +
                                  " attention_heads over quantized caches equals attention_head per head: " +
                                  std::to_string(bad_heads) + " of " + std::to_string(cases) + " differ");
    if (tile_fn)
        check(bad_tile == 0, isa +
                                 " attention_tile over quantized caches equals attention_heads per token: " +
                                 std::to_string(bad_tile) + " of " + std::to_string(cases) + " differ");
}

}  // namespace

int main() {
    std::printf("cpu isa in use: %s\n", isa_name(active_isa()));
    std::mt19937_64 rng(20261208);
    test_hadamard(rng);
    test_cache_storage(rng);
    test_reference(rng);
    // the dispatched kernels (whatever the active ISA is), longer tiles too
    test_kernels(isa_name(active_isa()), attention_head, attention_heads, attention_tile, 3 * kAttentionTile,
                 rng);
#if defined(QRT_HAVE_AVX2)
    if (cpu_runs(Isa::Avx2))
        test_kernels("avx2", avx2::attention_head, avx2::attention_heads, avx2::attention_tile,
                     kAttentionTile, rng);
#endif
#if defined(QRT_HAVE_NEON)
    if (cpu_runs(Isa::Neon)) test_kernels("neon", neon::attention_head, nullptr, nullptr, 1, rng);
#endif
    return report();
}
