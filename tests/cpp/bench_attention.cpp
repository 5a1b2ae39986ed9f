// bench_attention: single-thread speed of prefill attention on the active ISA, per token (attention_heads)
// and in tiles of consecutive tokens (attention_tile), over one KV head of a fresh P-token prompt.
//
//     bench_attention [--p 512] [--hd 64] [--group 3] [--seconds 0.5]
//
// Every token t attends over keys [0, t]; the cache is random fp16 in 16-token blocks. Prints the best of
// several timed runs. Not a test: the C++ test build compiles it so that it cannot rot.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/ops.h"
#include "format/common.h"
#include "kv/kv_cache.h"

using namespace qrt;

namespace {

template <typename Fn>
double best_seconds(double budget, Fn&& fn) {
    using clock = std::chrono::steady_clock;
    double best = 1e30, spent = 0;
    for (int r = 0; r < 3 || spent < budget; ++r) {
        const auto t0 = clock::now();
        fn();
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        best = std::min(best, dt);
        spent += dt;
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    int p = 512, hd = 64, group = 3, kv_heads = 3;
    double seconds = 0.5;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const double v = i + 1 < argc ? std::atof(argv[i + 1]) : 0.0;
        if (a == "--p") p = int(v), ++i;
        if (a == "--hd") hd = int(v), ++i;
        if (a == "--group") group = int(v), ++i;
        if (a == "--kv-heads") kv_heads = int(v), ++i;
        if (a == "--seconds") seconds = v, ++i;
    }
    const int bs = kKvBlockSize, n_blocks = (p + bs - 1) / bs;
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal;
    std::vector<half_bits> k(size_t(n_blocks) * kv_heads * bs * hd), v(k.size());
    for (auto& h : k) h = fp32_to_fp16(normal(rng));
    for (auto& h : v) h = fp32_to_fp16(normal(rng));
    std::vector<int32_t> table(static_cast<size_t>(n_blocks));
    for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = b;
    const PagedKv kv{reinterpret_cast<const uint8_t*>(k.data()),
                     reinterpret_cast<const uint8_t*>(v.data()),
                     table.data(),
                     kv_heads,
                     hd,
                     bs};
    const int64_t stride = int64_t(kv_heads) * group * hd;  // a token's query heads
    std::vector<float> q(size_t(p * stride)), out(q.size());
    for (auto& x : q) x = normal(rng);
    std::vector<float> scores(size_t(kAttentionTile) * size_t(std::min(group, kAttentionMaxGroup)) *
                              size_t(p));

    const double per_token = best_seconds(seconds, [&] {
        for (int t = 0; t < p; ++t)
            for (int h = 0; h < kv_heads; ++h) {
                const int64_t o = t * stride + h * group * hd;
                attention_heads(out.data() + o, q.data() + o, group, kv, h, t + 1, 0.125f, scores.data());
            }
    });
    const double tiled = best_seconds(seconds, [&] {
        for (int t = 0; t < p; t += kAttentionTile)
            for (int h = 0; h < kv_heads; ++h) {
                const int64_t o = t * stride + h * group * hd;
                attention_tile(out.data() + o, q.data() + o, stride, std::min(kAttentionTile, p - t), group,
                               kv, h, t + 1, 0.125f, scores.data());
            }
    });
    std::printf("isa %s, p=%d, head_dim=%d, group=%d, %d KV heads, single thread, best of runs\n",
                isa_name(active_isa()), p, hd, group, kv_heads);
    std::printf("per token: %8.3f ms\ntiles of %d: %6.3f ms  (%.2fx)\n", per_token * 1e3, kAttentionTile,
                tiled * 1e3, per_token / tiled);
    return 0;
}
