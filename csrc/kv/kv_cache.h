// Paged KV cache: fixed-size blocks of 16 tokens from one pool allocated up front (FORMATS.md §6).
//
// Storage, per layer, for K and for V alike (vLLM's "flash" order with the head outermost so one head's keys
// in a block are contiguous):
//
//     pool[layer][physical block][kv_head][16 token slots][row]
//
// A row is one token's head_dim values in the pool's type (KvCacheShape::k_type, v_type): F16, or for a
// quantized cache ggml's Q8_0 (34 bytes per 32 values: 0.53x of f16) or Q4_0 (18 bytes: 0.28x) blocks along
// head_dim, as llama.cpp's --cache-type-k/-v q8_0/q4_0 store them (format/legacy.h; head_dim a multiple of
// 32). store() quantizes a row as the activation quantizer of that type does (kernels::quantize_row, equal
// to the format reference); attention (cpu/ops.h) reads the blocks directly.
//
// Each sequence has a block table: logical block i (its tokens 16i .. 16i+15) lives in physical block
// table[i]. A sequence's token t is at slot t % 16 of block table[t / 16]. Blocks come from a free list
// and go back to it when a sequence is cleared or truncated; tokens are appended in order, so the
// causal mask is "slot index <= the query's slot index".
//
// Capacity: every sequence may hold up to n_ctx tokens, so the pool has n_seq_max * ceil(n_ctx / 16)
// blocks and appending never runs out of blocks. All memory (pool, free list, tables at full capacity)
// is allocated by the constructor; nothing allocates afterwards.
//
// Layers on another device (model/offload.h) keep their K and V in pools of their own with the same
// geometry (pool_halves() halves each, indexed by the same physical blocks): the cache's block tables are
// the one record of which blocks a sequence holds, and store()/view() take a KvPools for those layers. A
// cache whose n_layer is 0 keeps only the tables (every layer is elsewhere).
//
// Prefix sharing (engine/scheduler.h's prefix cache): a full block may be held by several tables (attach())
// and pinned by the prefix cache (pin()). Each block counts the tables holding it; a block no table holds
// goes back to the free list, unless it is pinned: then it waits, evictable, in least-recently-released
// order, and reserve() takes evictable blocks (unpinning them and bumping their generation, so the cache
// sees its entry went stale) once the free list is empty. Tokens are only ever written past a sequence's
// length, so a shared block, which is full, is never written.
//
// Sliding-window caches (shape.window > 0, for the sliding-window layers of gemma3): a token attends only
// to the last `window` tokens, so blocks whose tokens all lie before every window still to come are given
// back (release_before; their table entries become kReleased), and the pool holds only what one window plus
// one batch can span per sequence: ceil((window - 1 + n_batch) / 16) + 1 blocks, however long n_ctx is.
// Views carry the window (PagedKv::window), and the forward starts them at the first block still held.
// Truncating such a sequence behind its window (seq_keep) forgets it entirely: its length becomes 0.
//
// Invariants (tests/cpp/test_kv.cpp): every physical block is free, evictable, or in at least one table; a
// table holds at least ceil(len / 16) entries and at most ceil(n_ctx / 16). Window caches share no blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "format/common.h"
#include "format/types.h"

namespace qrt {

// Physical memory of this machine in bytes, or 0 when unknown (bounds the KV pool; the cpu-test offload
// device reports it as its free memory).
uint64_t physical_memory();

constexpr int kKvBlockSize = 16;

// The pool could not be allocated; what() says how many bytes were asked for. A std::bad_alloc, so
// pybind11 turns it into MemoryError.
class KvAllocationError : public std::bad_alloc {
  public:
    explicit KvAllocationError(std::string msg) : msg_(std::move(msg)) {}
    const char* what() const noexcept override { return msg_.c_str(); }

  private:
    std::string msg_;
};

struct KvCacheShape {
    int n_layer = 0;  // layers stored here; 0: block tables only
    int n_kv_head = 0, head_dim = 0;
    int n_ctx = 0;      // tokens per sequence
    int n_seq_max = 1;  // sequences
    // Blocks in the pool; 0: n_seq_max * ceil(n_ctx / 16), enough for every sequence at full length. A
    // smaller pool is shared on demand (engine/scheduler.h admits and preempts by free blocks); reserve()
    // then throws std::length_error when the pool runs dry.
    int n_blocks = 0;
    int window = 0;   // > 0: a sliding-window cache of that many tokens
    int n_batch = 0;  // window caches: the most tokens one forward appends to a sequence (>= 1)
    TypeId k_type = TypeId::F16, v_type = TypeId::F16;  // F16, Q8_0 or Q4_0 (kKvTypes)
};

// The types a cache can store K and V in, and their names as llama.cpp's --cache-type-k/-v spell them.
constexpr TypeId kKvTypes[] = {TypeId::F16, TypeId::Q8_0, TypeId::Q4_0};
constexpr const char* kKvTypeNames[] = {"f16", "q8_0", "q4_0"};
// "f16" | "q8_0" | "q4_0" -> the type; std::invalid_argument naming `what` and the accepted names otherwise.
TypeId kv_type_from_name(const std::string& name, const std::string& what);
const char* kv_type_name(TypeId type);

// One layer's K and V pools, [n_blocks][n_kv_head][16][row of k_type] and [...][row of v_type].
struct KvPools {
    uint8_t* k = nullptr;
    uint8_t* v = nullptr;
};

class KvCache {
  public:
    // Throws std::invalid_argument for a non-positive size (n_layer may be 0), a type not in kKvTypes or a
    // quantized type with head_dim not a multiple of 32, and KvAllocationError when the pool (whose size is
    // bytes_needed(shape)) is larger than physical memory or cannot be allocated.
    explicit KvCache(const KvCacheShape& shape);

    // Bytes of K and V storage for `shape`; 0 when n_layer is 0 or the count does not fit in 64 bits.
    static uint64_t bytes_needed(const KvCacheShape& shape);

    const KvCacheShape& shape() const { return shape_; }
    uint64_t bytes() const { return bytes_; }
    int n_blocks() const { return n_blocks_; }
    int n_free_blocks() const { return int(free_.size()); }
    // Pinned blocks no table holds: reserve() takes them when the free list runs out.
    int n_evictable_blocks() const { return n_evictable_; }
    // Blocks `seq` would need from the pool to grow by n tokens.
    int blocks_to_grow(int seq, int n) const {
        const int64_t len = len_.at(size_t(check_seq(seq)));
        return int((len + n + kKvBlockSize - 1) / kKvBlockSize) - int(tables_[size_t(seq)].size());
    }
    int seq_len(int seq) const { return len_.at(size_t(check_seq(seq))); }
    const std::vector<int32_t>& block_table(int seq) const { return tables_.at(size_t(check_seq(seq))); }
    // Bytes of one layer's K pool and V pool: n_blocks * n_kv_head * 16 * (row bytes of its type).
    size_t k_pool_bytes() const { return size_t(n_blocks_) * k_block_bytes_; }
    size_t v_pool_bytes() const { return size_t(n_blocks_) * v_block_bytes_; }
    // The pools of the layers stored here, [shape().n_layer].
    const KvPools* pools() const { return pools_.data(); }

    // Gives `seq` blocks for n more tokens. Throws std::length_error when it would exceed n_ctx or the pool
    // has too few free blocks (only possible with KvCacheShape::n_blocks set); nothing changes then.
    // Gives `seq` blocks for n more tokens. Throws std::length_error when it would exceed n_ctx (or, in a
    // window cache, n_batch tokens beyond what release_before left).
    void reserve(int seq, int n);
    // Window caches: gives back the blocks of `seq` all of whose tokens lie before position `pos`.
    void release_before(int seq, int pos);
    // Window caches: the first logical block of `seq` still held.
    int first_held_block(int seq) const { return released_.at(size_t(check_seq(seq))); }
    static constexpr int32_t kReleased = -1;
    // Writes token t's K and V ([n_kv_head * head_dim] floats each, head-major) for `layer`; t must be
    // below the reserved capacity.
    void store(int layer, int seq, int t, const float* k, const float* v) {
        store(pools_[size_t(layer)], seq, t, k, v);
    }
    // The same into pools of this cache's geometry held elsewhere.
    void store(const KvPools& pools, int seq, int t, const float* k, const float* v) const;
    // The tokens written since the last commit become part of the sequence: len += n.
    void commit(int seq, int n);
    // Read access for attention over `layer` of `seq`.
    PagedKv view(int layer, int seq) const { return view(pools_[size_t(layer)], seq); }
    PagedKv view(const KvPools& pools, int seq) const;

    // Keeps the first n tokens of `seq` and returns the blocks it no longer needs to the pool.
    void seq_keep(int seq, int n);
    // Ends a sequence: all its blocks go back to the pool.
    void seq_rm(int seq) { seq_keep(seq, 0); }

    // --- prefix sharing ---
    // Gives the empty sequence `seq` the full blocks `blocks` (each in use or evictable), as its first
    // blocks.size() * 16 tokens. Throws std::invalid_argument if seq is not empty, a block is free, or it
    // would exceed n_ctx.
    void attach(int seq, const int32_t* blocks, int n);
    // Pins block i of `seq` (which must be full) for the prefix cache; returns the physical block.
    int32_t pin(int seq, int i);
    // Unpins a block (a no-op if it is not pinned); if no table holds it, it goes back to the free list.
    void unpin(int32_t block);
    bool pinned(int32_t block) const { return pinned_[size_t(block)] != 0; }
    // Bumped each time the block is evicted: a prefix cache entry (block, generation) is valid while equal.
    uint32_t generation(int32_t block) const { return gen_[size_t(block)]; }
    int block_refs(int32_t block) const { return ref_[size_t(block)]; }

  private:
    int check_seq(int seq) const;

    KvCacheShape shape_;
    int blocks_per_seq_ = 0;
    int n_blocks_ = 0;
    size_t k_block_bytes_ = 0, v_block_bytes_ = 0;  // per block per layer: n_kv_head * 16 * row bytes
    int64_t k_row_bytes_ = 0, v_row_bytes_ = 0;
    uint64_t bytes_ = 0;
    // The active ISA's row converters to k_type and v_type (F16C on AVX2), each equal to the reference.
    QuantizeRowFn to_k_ = nullptr, to_v_ = nullptr;
    std::unique_ptr<uint8_t[]> k_, v_;          // [n_layer][n_blocks][n_kv_head][16][row]
    std::vector<KvPools> pools_;                // [n_layer] into k_, v_
    std::vector<int32_t> free_;                 // free physical blocks (a stack)
    std::vector<std::vector<int32_t>> tables_;  // [n_seq_max] block tables, capacity blocks_per_seq
    std::vector<int> len_;                      // [n_seq_max] tokens committed
    // Prefix sharing, [n_blocks] each: tables holding the block, pinned flag, generation, and the
    // evictable list (pinned, no table) as a doubly linked list from lru_head_ (oldest) to lru_tail_.
    std::vector<int32_t> ref_;
    std::vector<uint8_t> pinned_;
    std::vector<uint32_t> gen_;
    std::vector<int32_t> lru_prev_, lru_next_;
    int32_t lru_head_ = -1, lru_tail_ = -1;
    int n_evictable_ = 0;

    int32_t take_block();           // from the free list, else the oldest evictable block
    void release_block(int32_t b);  // a table dropped b
    void lru_push(int32_t b);
    void lru_remove(int32_t b);
    std::vector<int> released_;  // [n_seq_max] leading table entries given back (window)
};

}  // namespace qrt
