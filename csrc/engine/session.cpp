#include "engine/session.h"

#include <algorithm>
#include <stdexcept>

#include "cpu/parallel.h"

namespace qrt {

namespace {

constexpr int kMaxCtx = 1 << 24;

SessionParams checked(SessionParams p) {
    if (p.n_ctx < 1 || p.n_ctx > kMaxCtx)
        throw std::invalid_argument("n_ctx must be in [1, " + std::to_string(kMaxCtx) + "], got " +
                                    std::to_string(p.n_ctx));
    if (p.n_threads < 0 || p.n_threads > 1024)
        throw std::invalid_argument("n_threads must be in [0, 1024] (0 = all cores), got " +
                                    std::to_string(p.n_threads));
    if (p.n_seq_max < 1 || p.n_seq_max > 4096)
        throw std::invalid_argument("n_seq_max must be in [1, 4096], got " + std::to_string(p.n_seq_max));
    if (p.n_kv_blocks < 0)
        throw std::invalid_argument("n_kv_blocks must be >= 0, got " + std::to_string(p.n_kv_blocks));
    if (p.n_batch < 1) throw std::invalid_argument("n_batch must be >= 1, got " + std::to_string(p.n_batch));
    if (p.gpu_layers < -2)
        throw std::invalid_argument("gpu_layers must be >= -1 (-1: all) or -2 (auto), got " +
                                    std::to_string(p.gpu_layers));
    if (p.gpu_layers != 0 && p.device.empty())
        throw std::invalid_argument("gpu_layers = " + std::to_string(p.gpu_layers) +
                                    " needs a device backend");
    if (p.n_threads == 0) p.n_threads = default_thread_count();
    p.n_batch = std::min(p.n_batch, p.n_ctx);
    return p;
}

// The cache of the host's layers [0, n_layer_host) that attend to the whole context (window = false), or of
// its sliding-window layers (window = true).
KvCacheShape kv_shape(const model::HParams& hp, const SessionParams& p, int n_layer_host,
                      bool window = false) {
    KvCacheShape s;
    s.n_layer = 0;
    for (int l = 0; l < n_layer_host; ++l) s.n_layer += hp.is_swa(l) == window;
    if (window) {
        s.window = int(hp.n_swa);
        s.n_batch = p.n_batch;
    }
    s.n_kv_head = int(hp.n_head_kv);
    s.head_dim = int(hp.head_dim);
    s.n_ctx = p.n_ctx;
    s.n_seq_max = p.n_seq_max;
    s.k_type = p.kv_type_k;
    s.v_type = p.kv_type_v;
    if (!window) s.n_blocks = p.n_kv_blocks;  // a window cache is sized by its window (kv/kv_cache.h)
    return s;
}

model::Placement placement(const model::Model& m, const SessionParams& p) {
    const int64_t n_layer = m.hp.n_layer;
    int64_t n = p.gpu_layers;
    if (n == -1) n = n_layer + 1;
    if (n == -2)
        n = model::choose_gpu_layers(m, kv_shape(m.hp, p, int(n_layer)), p.n_batch, p.n_threads,
                                     model::device_free_bytes(p.device, p.device_free_bytes));
    return model::place(n_layer, n);
}

}  // namespace

Session::Session(const std::string& path, const SessionParams& params)
    : params_(checked(params)),
      model_(std::make_unique<model::Model>(path)),
      placement_(placement(*model_, params_)),
      packed_(model::pack_weights(model_->w, model_->file, 0, placement_.first, !placement_.head,
                                  params_.n_threads)),
      kv_(kv_shape(model_->hp, params_, int(placement_.first))),
      kv_swa_(model_->hp.has_swa()
                  ? std::make_unique<KvCache>(kv_shape(model_->hp, params_, int(placement_.first), true))
                  : nullptr),
      pool_(params_.n_threads),
      buf_(*model_, params_.n_batch, params_.n_ctx, params_.n_threads, params_.n_seq_max),
      device_(placement_.any()
                  ? model::make_device_part(params_.device, *model_, placement_, kv_, params_.n_batch,
                                            params_.n_threads, params_.device_free_bytes)
                  : nullptr),
      positions_(size_t(params_.n_batch)),
      want_(size_t(params_.n_batch)),
      seq_n_(size_t(params_.n_seq_max)),
      seq_past_(size_t(params_.n_seq_max)),
      seq_pos_(size_t(params_.n_seq_max)),
      seq_last_(size_t(params_.n_seq_max)) {}

void Session::check_seq(int seq) const {
    if (seq < 0 || seq >= params_.n_seq_max)
        throw std::invalid_argument("sequence id " + std::to_string(seq) + " is out of range [0, " +
                                    std::to_string(params_.n_seq_max) + ")");
}

void Session::check_tokens(std::span<const int32_t> tokens) const {
    const int64_t n_vocab = model_->hp.n_vocab;
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            throw std::invalid_argument("token id " + std::to_string(tokens[i]) + " at index " +
                                        std::to_string(i) + " is out of range [0, " +
                                        std::to_string(n_vocab) + ")");
}

int Session::seq_len(int seq) const {
    check_seq(seq);
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.seq_len(seq);
}

int Session::n_free_kv_blocks() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.n_free_blocks();
}

int Session::kv_blocks_to_grow(int seq, int n) const {
    check_seq(seq);
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.blocks_to_grow(seq, n);
}

int Session::n_evictable_kv_blocks() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.n_evictable_blocks();
}

void Session::kv_attach(int seq, std::span<const int32_t> blocks) {
    check_seq(seq);
    std::lock_guard<std::mutex> lock(mutex_);
    kv_.attach(seq, blocks.data(), int(blocks.size()));
}

int32_t Session::kv_pin(int seq, int i) {
    check_seq(seq);
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.pin(seq, i);
}

void Session::kv_unpin(int32_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    kv_.unpin(block);
}

uint32_t Session::kv_generation(int32_t block) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.generation(block);
}

void Session::eval(std::span<const int32_t> tokens, std::span<const int32_t> positions, int seq,
                   float* logits, bool all_logits) {
    check_seq(seq);
    const int64_t n = int64_t(tokens.size());
    if (n == 0) throw std::invalid_argument("no tokens to evaluate");
    if (!positions.empty() && positions.size() != tokens.size())
        throw std::invalid_argument("got " + std::to_string(tokens.size()) + " tokens but " +
                                    std::to_string(positions.size()) + " positions");
    const int64_t n_vocab = model_->hp.n_vocab;
    for (int64_t i = 0; i < n; ++i) {
        if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= n_vocab)
            throw std::invalid_argument("token id " + std::to_string(tokens[size_t(i)]) + " at index " +
                                        std::to_string(i) + " is out of range [0, " +
                                        std::to_string(n_vocab) + ")");
        if (!positions.empty() && positions[size_t(i)] < 0)
            throw std::invalid_argument("position " + std::to_string(positions[size_t(i)]) + " at index " +
                                        std::to_string(i) + " is negative");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t n_past = kv_.seq_len(seq);
    if (n_past + n > params_.n_ctx) {
        std::string msg =
            "prompt has " + std::to_string(n) + " tokens, context is " + std::to_string(params_.n_ctx);
        if (n_past > 0)
            msg += " (sequence " + std::to_string(seq) + " already holds " + std::to_string(n_past) + ")";
        throw std::invalid_argument(msg);
    }
    // Split into batches of n_batch; only the last batch produces logits unless all are wanted.
    try {
        for (int64_t b = 0; b < n; b += params_.n_batch) {
            const int nb = int(std::min<int64_t>(params_.n_batch, n - b));
            const bool last = b + nb == n;
            float* out = all_logits ? logits + b * n_vocab : (last ? logits : nullptr);
            const int32_t* pos = positions.data() + b;
            if (positions.empty()) {
                for (int i = 0; i < nb; ++i) positions_[size_t(i)] = int32_t(n_past + b + i);
                pos = positions_.data();
            }
            model::forward(*model_, kv_, pool_, buf_, seq, tokens.data() + b, pos, nb, out, all_logits,
                           device_.get(), kv_swa_.get());
        }
    } catch (...) {
        keep(seq, int(n_past));  // nothing appended on failure
        throw;
    }
}

int Session::eval_batch(std::span<const int32_t> tokens, std::span<const int32_t> seq_ids, float* logits,
                        bool all_logits, std::span<const uint8_t> want) {
    const int64_t n = int64_t(tokens.size());
    if (n == 0) throw std::invalid_argument("no tokens to evaluate");
    if (seq_ids.size() != tokens.size())
        throw std::invalid_argument("got " + std::to_string(tokens.size()) + " tokens but " +
                                    std::to_string(seq_ids.size()) + " sequence ids");
    if (!want.empty() && want.size() != tokens.size())
        throw std::invalid_argument("got " + std::to_string(tokens.size()) + " tokens but " +
                                    std::to_string(want.size()) + " logits flags");
    check_tokens(tokens);
    for (size_t i = 0; i < seq_ids.size(); ++i)
        if (seq_ids[i] < 0 || seq_ids[i] >= params_.n_seq_max)
            throw std::invalid_argument("sequence id " + std::to_string(seq_ids[i]) + " at index " +
                                        std::to_string(i) + " is out of range [0, " +
                                        std::to_string(params_.n_seq_max) + ")");
    std::lock_guard<std::mutex> lock(mutex_);
    // Per sequence in the batch: its token count, its last token, its length before the batch.
    for (int64_t i = 0; i < n; ++i) seq_n_[size_t(seq_ids[size_t(i)])] = 0;
    for (int64_t i = 0; i < n; ++i) {
        const size_t s = size_t(seq_ids[size_t(i)]);
        ++seq_n_[s];
        seq_last_[s] = i;
    }
    int n_rows = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int s = seq_ids[size_t(i)];
        if (seq_last_[size_t(s)] != i) continue;
        ++n_rows;
        const int n_past = kv_.seq_len(s), n_new = seq_n_[size_t(s)];
        if (int64_t(n_past) + n_new > params_.n_ctx)
            throw std::invalid_argument("prompt has " + std::to_string(n_new) + " tokens, context is " +
                                        std::to_string(params_.n_ctx) + " (sequence " + std::to_string(s) +
                                        (n_past > 0 ? " already holds " + std::to_string(n_past) : "") + ")");
        seq_past_[size_t(s)] = seq_pos_[size_t(s)] = n_past;
    }
    if (all_logits) n_rows = int(n);
    if (!all_logits && !want.empty())
        for (int64_t i = 0; i < n; ++i)
            n_rows += want[size_t(i)] && seq_last_[size_t(seq_ids[size_t(i)])] != i;
    // Split into forward calls of n_batch tokens; each writes the rows of its wanted tokens in order.
    try {
        int64_t row = 0;
        for (int64_t b = 0; b < n; b += params_.n_batch) {
            const int nb = int(std::min<int64_t>(params_.n_batch, n - b));
            int n_out = 0;
            for (int i = 0; i < nb; ++i) {
                const size_t s = size_t(seq_ids[size_t(b + i)]);
                positions_[size_t(i)] = seq_pos_[s]++;
                want_[size_t(i)] =
                    uint8_t(all_logits || seq_last_[s] == b + i || (!want.empty() && want[size_t(b + i)]));
                n_out += want_[size_t(i)];
            }
            model::forward(*model_, kv_, pool_, buf_, tokens.data() + b, seq_ids.data() + b,
                           positions_.data(), nb, want_.data(),
                           logits && n_out > 0 ? logits + row * model_->hp.n_vocab : nullptr, device_.get(),
                           kv_swa_.get());
            row += n_out;
        }
    } catch (...) {
        for (int64_t i = 0; i < n; ++i) {  // nothing appended on failure
            const int s = seq_ids[size_t(i)];
            keep(s, seq_past_[size_t(s)]);
        }
        throw;
    }
    return n_rows;
}

void Session::seq_keep(int seq, int n) {
    check_seq(seq);
    if (n < 0) throw std::invalid_argument("seq_keep: n must be >= 0, got " + std::to_string(n));
    std::lock_guard<std::mutex> lock(mutex_);
    keep(seq, n);
}

void Session::keep(int seq, int n) {
    if (kv_swa_) {  // a window cache may have to forget the sequence (kv/kv_cache.h): both caches agree
        kv_swa_->seq_keep(seq, n);
        n = std::min(n, kv_swa_->seq_len(seq));
    }
    kv_.seq_keep(seq, n);
}

}  // namespace qrt
