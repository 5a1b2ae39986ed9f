#include "kv/kv_cache.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>

#include "kernels/dispatch.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace qrt {

namespace {

std::string gib(uint64_t bytes) {
    return std::to_string(double(bytes) / double(1ull << 30)).substr(0, 6) + " GiB";
}

}  // namespace

uint64_t physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return uint64_t(pages) * uint64_t(page);
#endif
    return 0;
}

namespace {

// Blocks one sequence can hold at once: its whole context, or in a window cache what a window and one batch
// span (a block may be partly before the window and the last one partly filled).
uint64_t blocks_held_per_seq(const KvCacheShape& s) {
    const uint64_t all = (uint64_t(s.n_ctx) + kKvBlockSize - 1) / kKvBlockSize;
    if (s.window <= 0) return all;
    const uint64_t span =
        (uint64_t(s.window) - 1 + uint64_t(s.n_batch) + kKvBlockSize - 1) / kKvBlockSize + 1;
    return span < all ? span : all;
}

}  // namespace

TypeId kv_type_from_name(const std::string& name, const std::string& what) {
    for (size_t i = 0; i < std::size(kKvTypes); ++i)
        if (name == kKvTypeNames[i]) return kKvTypes[i];
    throw std::invalid_argument(what + " '" + name + "' is not a KV cache type; accepted: f16, q8_0, q4_0");
}

const char* kv_type_name(TypeId type) {
    for (size_t i = 0; i < std::size(kKvTypes); ++i)
        if (type == kKvTypes[i]) return kKvTypeNames[i];
    return "?";
}

namespace {

bool kv_type_ok(TypeId t) {
    for (TypeId k : kKvTypes)
        if (t == k) return true;
    return false;
}

}  // namespace

uint64_t KvCache::bytes_needed(const KvCacheShape& s) {
    if (s.n_layer < 0 || s.n_kv_head <= 0 || s.head_dim <= 0 || s.n_ctx <= 0 || s.n_seq_max <= 0) return 0;
    if (s.window < 0 || (s.window > 0 && s.n_batch <= 0)) return 0;
    if (!kv_type_ok(s.k_type) || !kv_type_ok(s.v_type)) return 0;
    if ((s.k_type != TypeId::F16 || s.v_type != TypeId::F16) && s.head_dim % 32 != 0) return 0;
    const uint64_t blocks =
        s.n_blocks > 0 ? uint64_t(s.n_blocks) : uint64_t(s.n_seq_max) * blocks_held_per_seq(s);
    // layers x blocks x heads x 16 x (K row + V row bytes); every factor < 2^31, so check each
    // multiplication against overflow.
    const uint64_t factors[] = {blocks, uint64_t(s.n_layer), uint64_t(s.n_kv_head),
                                uint64_t(kKvBlockSize) * uint64_t(kv_row_bytes(s.k_type, s.head_dim) +
                                                                  kv_row_bytes(s.v_type, s.head_dim))};
    uint64_t total = 1;
    if (s.n_layer == 0) return 0;
    for (uint64_t f : factors) {
        if (total > UINT64_MAX / f) return 0;
        total *= f;
    }
    return total;
}

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape) {
    if (shape.n_layer < 0 || shape.n_kv_head <= 0 || shape.head_dim <= 0 || shape.n_ctx <= 0 ||
        shape.n_seq_max <= 0 || shape.n_blocks < 0 || shape.window < 0 ||
        (shape.window > 0 && shape.n_batch <= 0))
        throw std::invalid_argument("KV cache: every dimension must be positive (n_layer may be 0)");
    for (TypeId t : {shape.k_type, shape.v_type}) {
        if (!kv_type_ok(t))
            throw std::invalid_argument("KV cache: type " + std::to_string(int(t)) +
                                        " is not one of f16, q8_0, q4_0");
        if (t != TypeId::F16 && shape.head_dim % 32 != 0)
            throw std::invalid_argument(std::string("KV cache: a ") + kv_type_name(t) +
                                        " cache needs head_dim to be a multiple of 32, the model has " +
                                        std::to_string(shape.head_dim));
    }
    to_k_ = kernels::quantize_row(shape.k_type);
    to_v_ = kernels::quantize_row(shape.v_type);
    k_row_bytes_ = kv_row_bytes(shape.k_type, shape.head_dim);
    v_row_bytes_ = kv_row_bytes(shape.v_type, shape.head_dim);
    bytes_ = bytes_needed(shape);
    const uint64_t blocks_per_seq = (uint64_t(shape.n_ctx) + kKvBlockSize - 1) / kKvBlockSize;
    const uint64_t n_blocks = shape.n_blocks > 0 ? uint64_t(shape.n_blocks)
                                                 : uint64_t(shape.n_seq_max) * blocks_held_per_seq(shape);
    const std::string what =
        "KV cache of " + std::to_string(shape.n_seq_max) + " x " + std::to_string(shape.n_ctx) + " tokens";
    if (bytes_ == 0 && shape.n_layer > 0)
        throw KvAllocationError("cannot allocate the " + what + ": its size overflows 64 bits");
    const uint64_t ram = physical_memory();
    if (ram != 0 && bytes_ > ram)
        throw KvAllocationError("cannot allocate " + std::to_string(bytes_) + " bytes (" + gib(bytes_) +
                                ") for the " + what + ": the machine has " + std::to_string(ram) +
                                " bytes of memory");
    if (n_blocks > uint64_t(INT32_MAX))
        throw KvAllocationError("cannot allocate " + std::to_string(bytes_) + " bytes for the " + what +
                                ": more than 2^31 blocks");
    blocks_per_seq_ = int(blocks_per_seq);
    n_blocks_ = int(n_blocks);
    k_block_bytes_ = size_t(shape.n_kv_head) * kKvBlockSize * size_t(k_row_bytes_);
    v_block_bytes_ = size_t(shape.n_kv_head) * kKvBlockSize * size_t(v_row_bytes_);
    const size_t k_bytes = k_pool_bytes() * size_t(shape.n_layer),
                 v_bytes = v_pool_bytes() * size_t(shape.n_layer);
    // new[] without initialization: pages are only touched as tokens are written.
    if (bytes_ > 0) {
        k_.reset(new (std::nothrow) uint8_t[k_bytes]);
        v_.reset(new (std::nothrow) uint8_t[v_bytes]);
    }
    if (bytes_ > 0 && (!k_ || !v_))
        throw KvAllocationError("cannot allocate " + std::to_string(bytes_) + " bytes (" + gib(bytes_) +
                                ") for the " + what);
    try {
        free_.reserve(size_t(n_blocks_));
        // Highest first, so blocks are handed out in increasing order (tests read more easily).
        for (int32_t b = n_blocks_ - 1; b >= 0; --b) free_.push_back(b);
        tables_.resize(size_t(shape.n_seq_max));
        for (auto& t : tables_) t.reserve(size_t(blocks_per_seq_));
        len_.assign(size_t(shape.n_seq_max), 0);
        ref_.assign(size_t(n_blocks_), 0);
        pinned_.assign(size_t(n_blocks_), 0);
        gen_.assign(size_t(n_blocks_), 0);
        lru_prev_.assign(size_t(n_blocks_), -1);
        lru_next_.assign(size_t(n_blocks_), -1);
        released_.assign(size_t(shape.n_seq_max), 0);
        pools_.resize(size_t(shape.n_layer));
        for (size_t l = 0; l < pools_.size(); ++l)
            pools_[l] = KvPools{k_.get() + l * k_pool_bytes(), v_.get() + l * v_pool_bytes()};
    } catch (const std::bad_alloc&) {
        throw KvAllocationError("cannot allocate the block tables of the " + what);
    }
}

int KvCache::check_seq(int seq) const {
    if (seq < 0 || seq >= shape_.n_seq_max)
        throw std::out_of_range("sequence id " + std::to_string(seq) + " is out of range [0, " +
                                std::to_string(shape_.n_seq_max) + ")");
    return seq;
}

void KvCache::reserve(int seq, int n) {
    check_seq(seq);
    const int64_t need_tokens = int64_t(len_[size_t(seq)]) + n;
    if (n < 0 || need_tokens > shape_.n_ctx)
        throw std::length_error("sequence " + std::to_string(seq) + " would hold " +
                                std::to_string(need_tokens) + " tokens, context is " +
                                std::to_string(shape_.n_ctx));
    auto& table = tables_[size_t(seq)];
    const size_t need_blocks = size_t((need_tokens + kKvBlockSize - 1) / kKvBlockSize);
    // Cannot run dry with the default full-context pool (each sequence's share is blocks_per_seq); a smaller
    // shared pool (n_blocks) or a window cache can.
    const size_t available = free_.size() + size_t(n_evictable_);
    if (need_blocks - std::min(need_blocks, table.size()) > available) {
        if (shape_.window > 0)
            throw std::length_error("sequence " + std::to_string(seq) + ": " + std::to_string(n) +
                                    " more tokens exceed the sliding-window cache's room");
        throw std::length_error("sequence " + std::to_string(seq) + " needs " +
                                std::to_string(need_blocks - table.size()) +
                                " more KV blocks, the pool has " + std::to_string(available) + " free");
    }
    while (table.size() < need_blocks) table.push_back(take_block());
}

void KvCache::release_before(int seq, int pos) {
    check_seq(seq);
    auto& table = tables_[size_t(seq)];
    int& released = released_[size_t(seq)];
    const int end = std::min(pos < 0 ? 0 : pos / kKvBlockSize, int(table.size()));
    for (; released < end; ++released) {
        release_block(table[size_t(released)]);
        table[size_t(released)] = kReleased;
    }
}

void KvCache::store(const KvPools& pools, int seq, int t, const float* k, const float* v) const {
    const int32_t block = tables_[size_t(seq)][size_t(t / kKvBlockSize)];
    const int slot = t % kKvBlockSize, hd = shape_.head_dim;
    uint8_t* kb = pools.k + size_t(block) * k_block_bytes_;
    uint8_t* vb = pools.v + size_t(block) * v_block_bytes_;
    for (int h = 0; h < shape_.n_kv_head; ++h) {
        const size_t row = size_t(h) * kKvBlockSize + size_t(slot);
        to_k_(k + h * hd, kb + row * size_t(k_row_bytes_), hd);
        to_v_(v + h * hd, vb + row * size_t(v_row_bytes_), hd);
    }
}

void KvCache::commit(int seq, int n) {
    len_[size_t(check_seq(seq))] += n;
}

PagedKv KvCache::view(const KvPools& pools, int seq) const {
    PagedKv kv;
    kv.k = pools.k;
    kv.v = pools.v;
    kv.block_table = tables_[size_t(seq)].data();
    kv.n_kv_head = shape_.n_kv_head;
    kv.head_dim = shape_.head_dim;
    kv.block_size = kKvBlockSize;
    kv.window = shape_.window;
    kv.k_type = shape_.k_type;
    kv.v_type = shape_.v_type;
    return kv;
}

void KvCache::seq_keep(int seq, int n) {
    check_seq(seq);
    if (n < 0) throw std::invalid_argument("seq_keep: negative length");
    int& len = len_[size_t(seq)];
    auto& table = tables_[size_t(seq)];
    if (n < len && n % kKvBlockSize != 0) {
        const int32_t b = table[size_t(n / kKvBlockSize)];
        if (b != kReleased && (ref_[size_t(b)] > 1 || pinned_[size_t(b)]))
            throw std::invalid_argument("seq_keep: sequence " + std::to_string(seq) + " cannot keep " +
                                        std::to_string(n) + " tokens: that block is shared");
    }
    if (n < len) len = n;
    int& released = released_[size_t(seq)];
    // A window cache keeps a sequence only while the next token's window is still held: keys from
    // len + 1 - window on.
    if (released > 0 && (len + 1 - shape_.window) / kKvBlockSize < released) len = 0;
    const size_t keep_blocks = size_t((int64_t(len) + kKvBlockSize - 1) / kKvBlockSize);
    while (table.size() > keep_blocks) {
        if (table.back() != kReleased) release_block(table.back());
        table.pop_back();
    }
    if (table.empty()) released = 0;
}

int32_t KvCache::take_block() {
    int32_t b;
    if (!free_.empty()) {
        b = free_.back();
        free_.pop_back();
    } else {  // reserve() checked that there is one
        b = lru_head_;
        lru_remove(b);
        pinned_[size_t(b)] = 0;
        ++gen_[size_t(b)];
    }
    ref_[size_t(b)] = 1;
    return b;
}

void KvCache::release_block(int32_t b) {
    if (--ref_[size_t(b)] > 0) return;
    if (pinned_[size_t(b)])
        lru_push(b);
    else
        free_.push_back(b);
}

void KvCache::lru_push(int32_t b) {
    lru_prev_[size_t(b)] = lru_tail_;
    lru_next_[size_t(b)] = -1;
    if (lru_tail_ >= 0)
        lru_next_[size_t(lru_tail_)] = b;
    else
        lru_head_ = b;
    lru_tail_ = b;
    ++n_evictable_;
}

void KvCache::lru_remove(int32_t b) {
    const int32_t p = lru_prev_[size_t(b)], q = lru_next_[size_t(b)];
    (p >= 0 ? lru_next_[size_t(p)] : lru_head_) = q;
    (q >= 0 ? lru_prev_[size_t(q)] : lru_tail_) = p;
    lru_prev_[size_t(b)] = lru_next_[size_t(b)] = -1;
    --n_evictable_;
}

void KvCache::attach(int seq, const int32_t* blocks, int n) {
    check_seq(seq);
    auto& table = tables_[size_t(seq)];
    if (len_[size_t(seq)] != 0 || !table.empty())
        throw std::invalid_argument("attach: sequence " + std::to_string(seq) + " is not empty");
    if (n < 0 || int64_t(n) * kKvBlockSize > shape_.n_ctx)
        throw std::invalid_argument("attach: " + std::to_string(n) + " blocks exceed the context");
    for (int i = 0; i < n; ++i) {
        const int32_t b = blocks[i];
        if (b < 0 || b >= n_blocks_ || (ref_[size_t(b)] == 0 && !pinned_[size_t(b)]))
            throw std::invalid_argument("attach: block " + std::to_string(b) + " holds nothing");
    }
    for (int i = 0; i < n; ++i) {
        const int32_t b = blocks[i];
        if (ref_[size_t(b)]++ == 0) lru_remove(b);  // was evictable
        table.push_back(b);
    }
    len_[size_t(seq)] = n * kKvBlockSize;
}

int32_t KvCache::pin(int seq, int i) {
    check_seq(seq);
    if (i < 0 || int64_t(i + 1) * kKvBlockSize > len_[size_t(seq)])
        throw std::invalid_argument("pin: block " + std::to_string(i) + " of sequence " +
                                    std::to_string(seq) + " is not full");
    const int32_t b = tables_[size_t(seq)][size_t(i)];
    pinned_[size_t(b)] = 1;
    return b;
}

void KvCache::unpin(int32_t block) {
    if (block < 0 || block >= n_blocks_ || !pinned_[size_t(block)]) return;
    pinned_[size_t(block)] = 0;
    if (ref_[size_t(block)] == 0) {
        lru_remove(block);
        free_.push_back(block);
    }
}

}  // namespace qrt
