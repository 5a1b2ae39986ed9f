// Session: a loaded model with its paged KV cache, thread pool and work buffers, ready to evaluate
// tokens of up to n_seq_max sequences of up to n_ctx tokens each.
//
// Everything is sized and allocated by the constructor (KV cache size: kv_bytes()); eval() allocates
// nothing. One eval runs at a time (a mutex serializes callers); it uses the pool's threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "cpu/threadpool.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "model/offload.h"
#include "model/packing.h"
#include "model/weights.h"

namespace qrt {

struct SessionParams {
    int n_ctx = 2048;     // tokens per sequence, >= 1
    int n_threads = 0;    // >= 0; 0 = one per hardware thread
    int n_seq_max = 1;    // sequences, >= 1
    int n_batch = 512;    // tokens per forward call; longer inputs are split
    int n_kv_blocks = 0;  // KV pool blocks of 16 tokens; 0: n_seq_max * ceil(n_ctx / 16) (never runs dry)
    // Offload (model/offload.h): the last gpu_layers layers (> n_layer: and the head) on `device`;
    // -1: everything; -2: "auto", the most that fit in the device's free memory with a margin.
    int gpu_layers = 0;
    std::string device;              // backend: "" (none; gpu_layers must be 0), "cpu-test", "cuda"
    uint64_t device_free_bytes = 0;  // != 0: stands in for the device's free memory (tests)
    // The KV cache's types for K and V (kv/kv_cache.h kKvTypes: F16, Q8_0, Q4_0).
    TypeId kv_type_k = TypeId::F16, kv_type_v = TypeId::F16;
};

class Session {
  public:
    // Loads the model (FormatError / UnsupportedError / IoError) and allocates everything else
    // (std::invalid_argument for bad params, KvAllocationError when the cache does not fit).
    Session(const std::string& path, const SessionParams& params);

    const model::Model& model() const { return *model_; }
    const model::HParams& hparams() const { return model_->hp; }
    const SessionParams& params() const { return params_; }
    // The host's share of the KV cache (CPU layers), sliding-window layers' cache included.
    uint64_t kv_bytes() const { return kv_.bytes() + (kv_swa_ ? kv_swa_->bytes() : 0); }
    // The layers on a device, or nullptr when everything runs on the CPU.
    const model::DevicePart* device() const { return device_.get(); }
    int n_threads() const { return pool_.n_threads(); }
    int seq_len(int seq) const;
    int n_kv_blocks() const { return kv_.n_blocks(); }
    int n_free_kv_blocks() const;
    // Blocks sequence `seq` would take from the pool to grow by n tokens.
    int kv_blocks_to_grow(int seq, int n) const;
    // Prefix sharing (kv/kv_cache.h: attach, pin, unpin, generation), for the scheduler's prefix cache.
    int n_evictable_kv_blocks() const;
    // Sliding-window layers keep their own cache, which shares no blocks (no prefix sharing then).
    bool has_window_cache() const { return kv_swa_ != nullptr; }
    void kv_attach(int seq, std::span<const int32_t> blocks);
    int32_t kv_pin(int seq, int i);
    void kv_unpin(int32_t block);
    uint32_t kv_generation(int32_t block) const;

    // Appends tokens to sequence `seq` at the given positions (empty: continuing the sequence, n_past + i)
    // and writes logits into `logits`:
    // [tokens.size()][n_vocab] when all_logits, else the last token's [n_vocab]. Throws
    // std::invalid_argument for an empty batch, mismatched sizes, ids outside [0, n_vocab), negative
    // positions, a bad sequence id, or when the sequence would exceed n_ctx ("... context is M").
    // Nothing is appended when it throws.
    void eval(std::span<const int32_t> tokens, std::span<const int32_t> positions, int seq, float* logits,
              bool all_logits);

    // Appends a batch mixing sequences, evaluated together: token i goes to sequence seq_ids[i], after
    // that sequence's cached tokens and its earlier tokens in this batch, at the next position (n_past +
    // its index among the sequence's tokens here). A sequence may appear any number of times, in any
    // order. Logits: [tokens.size()][n_vocab] when all_logits, else one [n_vocab] row per distinct
    // sequence in the batch, its last token's, rows in the order of those last tokens in `tokens` (for
    // the usual layouts, each sequence's tokens contiguous or one token per sequence, that is the order in
    // which the sequences first appear). `want`, when not empty, has one flag per token: a flagged token
    // gives a row too (rows then in token order; the scheduler's prompt log-probabilities). logits ==
    // nullptr computes no logits. Returns the number of rows.
    // Throws std::invalid_argument like eval() (empty batch, sizes, token or sequence ids out of range, a
    // sequence that would exceed n_ctx: "prompt has N tokens, context is M (sequence s ...)"). Nothing is
    // appended to any sequence when it throws. Allocates nothing.
    int eval_batch(std::span<const int32_t> tokens, std::span<const int32_t> seq_ids, float* logits,
                   bool all_logits, std::span<const uint8_t> want = {});

    // Forgets the tokens of `seq` from position n on (n = 0: the whole sequence), freeing its blocks. On a
    // model with sliding-window layers, keeping fewer tokens than the window's blocks still hold forgets the
    // whole sequence (seq_len becomes 0): their keys were given back.
    void seq_keep(int seq, int n);
    void clear(int seq) { seq_keep(seq, 0); }

  private:
    void check_seq(int seq) const;
    void keep(int seq, int n);  // seq_keep under the lock
    void check_tokens(std::span<const int32_t> tokens) const;

    SessionParams params_;
    std::unique_ptr<model::Model> model_;
    model::Placement placement_;
    model::PackedBytes packed_;        // the CPU layers' weights repacked for the packed kernels
    KvCache kv_;                       // layers attending to the whole context
    std::unique_ptr<KvCache> kv_swa_;  // sliding-window layers (hparams has_swa()), else nullptr
    ThreadPool pool_;
    model::ForwardBuffers buf_;
    std::unique_ptr<model::DevicePart> device_;
    std::vector<int32_t> positions_;  // [n_batch] for eval() without positions, and eval_batch()
    std::vector<uint8_t> want_;       // [n_batch] eval_batch(): which tokens of a forward call give logits
    std::vector<int32_t> seq_n_;      // [n_seq_max] eval_batch(): tokens per sequence in the batch
    std::vector<int32_t> seq_past_;   // [n_seq_max] eval_batch(): sequence lengths before the batch
    std::vector<int32_t> seq_pos_;    // [n_seq_max] eval_batch(): next position per sequence
    std::vector<int64_t> seq_last_;   // [n_seq_max] eval_batch(): index of the sequence's last token
    mutable std::mutex mutex_;
};

}  // namespace qrt
