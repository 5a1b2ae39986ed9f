// The paged KV cache's block bookkeeping (kv/kv_cache.h) and the attention read through block tables,
// under random appends, truncations and frees (run it under ASan + UBSan). Prints "N passed, M failed";
// exits non-zero on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/ops.h"
#include "kv/kv_cache.h"

namespace {

using qrt::kKvBlockSize;
using qrt::KvCache;
using qrt::KvCacheShape;

using qrt::testing::check;

using qrt::testing::check_throws;

KvCacheShape small_shape(int n_ctx, int n_seq_max) {
    KvCacheShape s;
    s.n_layer = 2;
    s.n_kv_head = 2;
    s.head_dim = 8;
    s.n_ctx = n_ctx;
    s.n_seq_max = n_seq_max;
    return s;
}

int blocks_for(int n_tokens) {
    return (n_tokens + kKvBlockSize - 1) / kKvBlockSize;
}

// Every physical block is free or in exactly one table; tables are long enough for their sequence and
// no longer than n_ctx allows.
bool invariants_hold(const KvCache& kv, std::string* why) {
    const KvCacheShape& s = kv.shape();
    std::vector<int> owners(size_t(kv.n_blocks()), 0);
    int in_tables = 0;
    for (int seq = 0; seq < s.n_seq_max; ++seq) {
        const auto& t = kv.block_table(seq);
        if (int(t.size()) < blocks_for(kv.seq_len(seq))) {
            *why = "table of seq " + std::to_string(seq) + " too short";
            return false;
        }
        if (int(t.size()) > blocks_for(s.n_ctx)) {
            *why = "table of seq " + std::to_string(seq) + " longer than n_ctx allows";
            return false;
        }
        for (size_t i = 0; i < t.size(); ++i) {
            const int32_t b = t[i];
            const bool released = int(i) < kv.first_held_block(seq);  // window caches: given back
            if (released != (b == KvCache::kReleased)) {
                *why = "table of seq " + std::to_string(seq) + ": released entries are not its leading ones";
                return false;
            }
            if (released) continue;
            if (b < 0 || b >= kv.n_blocks()) {
                *why = "block id out of range";
                return false;
            }
            ++owners[size_t(b)];
            ++in_tables;
        }
    }
    for (int b = 0; b < kv.n_blocks(); ++b)
        if (owners[size_t(b)] > 1) {
            *why = "block " + std::to_string(b) + " is in two tables";
            return false;
        }
    if (in_tables + kv.n_free_blocks() != kv.n_blocks()) {
        *why = "blocks in tables + free blocks != pool size";
        return false;
    }
    return true;
}

// A value that identifies (seq, token, layer, head, dim) and survives f16 rounding (small integers).
float tag(int seq, int t, int layer, int head, int d) {
    return float((seq * 7 + t * 3 + layer * 5 + head * 11 + d) % 1000);
}

void store_token(KvCache& kv, int seq, int t) {
    const KvCacheShape& s = kv.shape();
    std::vector<float> k(size_t(s.n_kv_head * s.head_dim)), v(k.size());
    for (int l = 0; l < s.n_layer; ++l) {
        for (int h = 0; h < s.n_kv_head; ++h)
            for (int d = 0; d < s.head_dim; ++d) {
                k[size_t(h * s.head_dim + d)] = tag(seq, t, l, h, d);
                v[size_t(h * s.head_dim + d)] = -tag(seq, t, l, h, d);
            }
        kv.store(l, seq, t, k.data(), v.data());
    }
}

// Reads every stored element of `seq` back through the block table (as attention does).
bool contents_ok(const KvCache& kv, int seq) {
    const KvCacheShape& s = kv.shape();
    for (int l = 0; l < s.n_layer; ++l) {
        const qrt::PagedKv view = kv.view(l, seq);
        const int64_t block_stride = int64_t(s.n_kv_head) * kKvBlockSize * s.head_dim;
        for (int t = kv.first_held_block(seq) * kKvBlockSize; t < kv.seq_len(seq); ++t)
            for (int h = 0; h < s.n_kv_head; ++h)
                for (int d = 0; d < s.head_dim; ++d) {
                    const int64_t at = view.block_table[t / kKvBlockSize] * block_stride +
                                       (int64_t(h) * kKvBlockSize + t % kKvBlockSize) * s.head_dim + d;
                    if (qrt::fp16_to_fp32(view.k16()[at]) != tag(seq, t, l, h, d)) return false;
                    if (qrt::fp16_to_fp32(view.v16()[at]) != -tag(seq, t, l, h, d)) return false;
                }
    }
    return true;
}

void append(KvCache& kv, int seq, int n) {
    kv.reserve(seq, n);
    const int len = kv.seq_len(seq);
    for (int t = len; t < len + n; ++t) store_token(kv, seq, t);
    kv.commit(seq, n);
}

void test_sizes() {
    KvCache kv(small_shape(40, 3));  // 3 blocks per sequence
    check(kv.n_blocks() == 9, "pool has n_seq_max * ceil(n_ctx / 16) blocks");
    check(kv.n_free_blocks() == 9, "all blocks start free");
    check(kv.bytes() == uint64_t(9) * 2 * 2 * 2 * kKvBlockSize * 8 * 2,
          "bytes = blocks x layers x K,V x heads x 16 x hd x 2");
    check(kv.bytes() == KvCache::bytes_needed(kv.shape()), "bytes_needed agrees");
    KvCacheShape huge = small_shape(1 << 24, 1 << 20);
    huge.n_layer = 1 << 20;
    check(KvCache::bytes_needed(huge) == 0, "overflowing size reports 0");
    check_throws<qrt::KvAllocationError>([&] { KvCache k(huge); }, "overflowing cache", "overflows");
    KvCacheShape big = small_shape(1 << 20, 1024);  // 2^26 blocks, 64 layers: 2^42 bytes, more than any RAM
    big.n_layer = 64;
    check_throws<std::bad_alloc>([&] { KvCache k(big); }, "cache larger than memory", "bytes");
    check_throws<std::invalid_argument>([&] { KvCache k(small_shape(0, 1)); }, "n_ctx 0");
}

void test_append_and_free() {
    KvCache kv(small_shape(40, 2));
    std::string why;
    append(kv, 0, 1);
    check(kv.block_table(0).size() == 1 && kv.n_free_blocks() == 5, "first token takes one block");
    append(kv, 0, 15);
    check(kv.block_table(0).size() == 1, "16 tokens fit one block");
    append(kv, 0, 1);
    check(kv.block_table(0).size() == 2, "token 17 opens a second block");
    append(kv, 1, 33);
    check(kv.block_table(1).size() == 3, "33 tokens take three blocks");
    check(invariants_hold(kv, &why), "invariants after appends: " + why);
    check(contents_ok(kv, 0) && contents_ok(kv, 1), "contents read back through the block tables");
    check_throws<std::length_error>([&] { kv.reserve(0, 24); }, "41 tokens in a 40-token context",
                                    "context is 40");
    check(kv.seq_len(0) == 17 && kv.block_table(0).size() == 2, "a refused reserve changes nothing");
    kv.seq_keep(1, 16);
    check(kv.seq_len(1) == 16 && kv.block_table(1).size() == 1, "truncating to 16 keeps one block");
    check(contents_ok(kv, 1), "truncated sequence keeps its first tokens");
    kv.seq_rm(0);
    check(kv.seq_len(0) == 0 && kv.block_table(0).empty(), "seq_rm empties the table");
    check(kv.n_free_blocks() == 5, "seq_rm returns the blocks");
    check(invariants_hold(kv, &why), "invariants after frees: " + why);
    append(kv, 0, 40);
    check(kv.seq_len(0) == 40 && contents_ok(kv, 0) && contents_ok(kv, 1), "freed blocks are reused");
    check(invariants_hold(kv, &why), "invariants after reuse: " + why);
    check_throws<std::out_of_range>([&] { (void)kv.seq_len(2); }, "sequence id out of range", "out of range");
    check_throws<std::out_of_range>([&] { kv.reserve(-1, 1); }, "negative sequence id", "out of range");
}

// A reserve that is never committed (an eval that failed) leaves blocks the next append reuses.
void test_uncommitted_reserve() {
    KvCache kv(small_shape(64, 1));
    std::string why;
    append(kv, 0, 5);
    kv.reserve(0, 30);  // 35 tokens: 3 blocks, nothing committed
    check(kv.block_table(0).size() == 3 && kv.seq_len(0) == 5, "reserve without commit");
    check(invariants_hold(kv, &why), "invariants with uncommitted blocks: " + why);
    kv.seq_keep(0, 5);
    check(kv.block_table(0).size() == 1, "seq_keep drops the uncommitted blocks");
    append(kv, 0, 50);
    check(kv.seq_len(0) == 55 && contents_ok(kv, 0), "append after a failed one");
}

// Random appends, truncations and frees over several sequences; invariants and contents checked all along.
void test_random_operations() {
    constexpr int kSeqs = 4, kCtx = 70;
    KvCache kv(small_shape(kCtx, kSeqs));
    std::mt19937 rng(1234);
    bool inv_ok = true, data_ok = true;
    int max_used = 0;
    std::string why;
    for (int step = 0; step < 3000; ++step) {
        const int seq = int(rng() % kSeqs);
        const int op = int(rng() % 10);
        const int len = kv.seq_len(seq);
        if (op < 7) {
            const int n = 1 + int(rng() % 20);
            if (len + n <= kCtx)
                append(kv, seq, n);
            else
                check_throws<std::length_error>([&] { kv.reserve(seq, n); }, "append past n_ctx",
                                                "context is");
        } else if (op < 8) {
            kv.seq_keep(seq, int(rng() % (len + 1)));
        } else if (op < 9) {
            kv.seq_rm(seq);
        } else {
            kv.reserve(seq, int(rng() % (kCtx - len + 1)));  // uncommitted
        }
        max_used = std::max(max_used, kv.n_blocks() - kv.n_free_blocks());
        inv_ok = inv_ok && invariants_hold(kv, &why);
        if (step % 50 == 0)
            for (int s = 0; s < kSeqs; ++s) data_ok = data_ok && contents_ok(kv, s);
    }
    check(inv_ok, "invariants under random operations: " + why);
    check(data_ok, "contents under random operations");
    check(max_used >= kv.n_blocks() - 2,
          "the random walk (nearly) filled the pool at some point: " + std::to_string(max_used) + " of " +
              std::to_string(kv.n_blocks()));
    for (int s = 0; s < kSeqs; ++s) kv.seq_rm(s);
    check(kv.n_free_blocks() == kv.n_blocks(), "everything free at the end");
}

// attention_head through a scattered block table equals a dense softmax(q.K) V computed directly.
void test_attention_through_blocks() {
    KvCacheShape s = small_shape(100, 3);
    KvCache kv(s);
    // Interleave three sequences so seq 1's blocks are scattered over the pool.
    for (int round = 0; round < 7; ++round)
        for (int seq = 0; seq < 3; ++seq) append(kv, seq, 5 + seq);
    const int seq = 1, n = kv.seq_len(seq), hd = s.head_dim;
    std::vector<float> q(static_cast<size_t>(hd)), out(q.size()), scores(static_cast<size_t>(n));
    for (int d = 0; d < hd; ++d) q[size_t(d)] = 0.001f * float(d + 1);
    bool ok = true;
    for (int l = 0; l < s.n_layer; ++l)
        for (int h = 0; h < s.n_kv_head; ++h) {
            qrt::attention_head(out.data(), q.data(), kv.view(l, seq), h, n, 0.5f, scores.data());
            std::vector<double> p(scores.size());
            double max = -1e300, sum = 0;
            for (int t = 0; t < n; ++t) {
                double dot = 0;
                for (int d = 0; d < hd; ++d) dot += double(q[size_t(d)]) * tag(seq, t, l, h, d);
                p[size_t(t)] = 0.5 * dot;
                max = std::max(max, p[size_t(t)]);
            }
            for (auto& x : p) sum += (x = std::exp(x - max));
            for (int d = 0; d < hd; ++d) {
                double want = 0;
                for (int t = 0; t < n; ++t) want += p[size_t(t)] / sum * -tag(seq, t, l, h, d);
                ok = ok && std::fabs(out[size_t(d)] - want) <= 1e-3 * (1 + std::fabs(want));
            }
        }
    check(ok, "attention over a scattered block table");
}

// A cache holding only block tables (every layer on a device) and pools of the same geometry held
// elsewhere, as a device part keeps them: what goes in through the tables comes back out, in the same
// place the cache's own pools would have put it.
void test_external_pools() {
    KvCacheShape tables_only = small_shape(40, 2);
    tables_only.n_layer = 0;
    KvCache host(tables_only);
    check(host.bytes() == 0 && KvCache::bytes_needed(tables_only) == 0, "a tables-only cache holds no K/V");
    check(host.n_blocks() == 6 && host.k_pool_bytes() == size_t(6 * 2 * kKvBlockSize * 8 * 2) &&
              host.v_pool_bytes() == host.k_pool_bytes(),
          "same geometry");
    KvCache own(small_shape(40, 2));  // the reference: its own pools, the same operations
    std::vector<uint8_t> k(host.k_pool_bytes()), v(host.v_pool_bytes());
    const qrt::KvPools ext{k.data(), v.data()};
    std::vector<float> kin(2 * 8), vin(2 * 8);
    for (int step = 0; step < 3; ++step)
        for (int seq : {1, 0}) {  // interleaved, so the tables scatter over the pool
            const int n = 7, len = host.seq_len(seq);
            host.reserve(seq, n);
            own.reserve(seq, n);
            for (int t = len; t < len + n; ++t) {
                for (size_t i = 0; i < kin.size(); ++i) {
                    kin[i] = tag(seq, t, 0, int(i / 8), int(i % 8));
                    vin[i] = -kin[i];
                }
                host.store(ext, seq, t, kin.data(), vin.data());
                own.store(0, seq, t, kin.data(), vin.data());
            }
            host.commit(seq, n);
            own.commit(seq, n);
        }
    for (int seq : {0, 1}) {
        check(host.block_table(seq) == own.block_table(seq), "same blocks from the same operations");
        const qrt::PagedKv a = host.view(ext, seq), b = own.view(0, seq);
        check(a.block_table == host.block_table(seq).data() && a.k == k.data(), "view reads the given pools");
        bool same = true;  // every written element, read through the tables (unwritten slots are garbage)
        for (int t = 0; t < host.seq_len(seq); ++t)
            for (int e = 0; e < 2 * 8; ++e) {
                const size_t at = size_t(a.block_table[t / kKvBlockSize]) * size_t(2 * kKvBlockSize * 8) +
                                  size_t((e / 8) * kKvBlockSize + t % kKvBlockSize) * 8 + size_t(e % 8);
                same = same && a.k16()[at] == b.k16()[at] && a.v16()[at] == b.v16()[at] &&
                       qrt::fp16_to_fp32(a.k16()[at]) == tag(seq, t, 0, e / 8, e % 8);
            }
        check(same, "external pools hold what the cache's own would");
    }
    check_throws<std::invalid_argument>(
        [&] {
            KvCacheShape neg = small_shape(40, 1);
            neg.n_layer = -1;
            KvCache bad(neg);
        },
        "negative n_layer");
}

// A sliding-window cache: appending in batches of up to n_batch tokens, each after release_before(the next
// token's window start) as the forward does, a sequence never holds more than the window and a batch span,
// every key of the window reads back, and the pool is that size whatever n_ctx is.
void test_window_cache() {
    KvCacheShape shape = small_shape(1000, 2);
    shape.window = 20;
    shape.n_batch = 8;
    KvCache kv(shape);
    const int per_seq = (20 - 1 + 8 + kKvBlockSize - 1) / kKvBlockSize + 1;  // 3
    check(kv.n_blocks() == 2 * per_seq, "a window cache's pool holds its span per sequence");
    check(kv.bytes() == KvCache::bytes_needed(shape) &&
              kv.bytes() < KvCache::bytes_needed(small_shape(1000, 2)),
          "and costs less than the full cache");
    std::mt19937_64 rng(5);
    std::string why;
    bool ok = true, bounded = true;
    for (int step = 0; step < 300; ++step) {
        const int seq = int(rng() % 2), n = 1 + int(rng() % 8);
        if (kv.seq_len(seq) + n > shape.n_ctx) continue;
        kv.release_before(seq, kv.seq_len(seq) + 1 - shape.window);
        append(kv, seq, n);
        ok = ok && invariants_hold(kv, &why) && contents_ok(kv, seq);
        const int held = int(kv.block_table(seq).size()) - kv.first_held_block(seq);
        bounded = bounded && held <= per_seq;
        const int first_key = kv.seq_len(seq) - shape.window;  // the last token's window
        ok = ok && kv.first_held_block(seq) * kKvBlockSize <= std::max(first_key, 0);
    }
    check(ok, "window cache: invariants and the window's keys hold while appending: " + why);
    check(bounded, "window cache: a sequence holds at most its span of blocks");
    check(kv.view(0, 0).window == 20, "views carry the window");
    // truncating within what is held keeps the sequence; behind the window forgets it
    const int len = kv.seq_len(0), held_from = kv.first_held_block(0) * kKvBlockSize;
    check(len > 40 && held_from > 0, "the test appended past the window");
    kv.seq_keep(0, len - 1);
    check(kv.seq_len(0) == len - 1 && contents_ok(kv, 0), "keeping a token less keeps the sequence");
    kv.seq_keep(0, held_from + 2);
    check(kv.seq_len(0) == 0 && kv.block_table(0).empty() && kv.first_held_block(0) == 0,
          "keeping fewer tokens than the window needs forgets the sequence");
    check(invariants_hold(kv, &why), "invariants after forgetting: " + why);
    kv.seq_rm(1);
    check(kv.n_free_blocks() == kv.n_blocks(), "every block back in the pool");
}

}  // namespace

int main() {
    test_sizes();
    test_append_and_free();
    test_uncommitted_reserve();
    test_random_operations();
    test_attention_through_blocks();
    test_external_pools();
    test_window_cache();
    return qrt::testing::report();
}
