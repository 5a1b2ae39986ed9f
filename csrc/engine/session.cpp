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
    if (p.n_batch < 1) throw std::invalid_argument("n_batch must be >= 1, got " + std::to_string(p.n_batch));
    if (p.n_threads == 0) p.n_threads = default_thread_count();
    p.n_batch = std::min(p.n_batch, p.n_ctx);
    return p;
}

KvCacheShape kv_shape(const model::HParams& hp, const SessionParams& p) {
    KvCacheShape s;
    s.n_layer = int(hp.n_layer);
    s.n_kv_head = int(hp.n_head_kv);
    s.head_dim = int(hp.head_dim);
    s.n_ctx = p.n_ctx;
    s.n_seq_max = p.n_seq_max;
    return s;
}

}  // namespace

Session::Session(const std::string& path, const SessionParams& params)
    : params_(checked(params)),
      model_(std::make_unique<model::Model>(path)),
      kv_(kv_shape(model_->hp, params_)),
      pool_(params_.n_threads),
      buf_(*model_, params_.n_batch, params_.n_ctx, params_.n_threads),
      positions_(size_t(params_.n_batch)) {}

void Session::check_seq(int seq) const {
    if (seq < 0 || seq >= params_.n_seq_max)
        throw std::invalid_argument("sequence id " + std::to_string(seq) + " is out of range [0, " +
                                    std::to_string(params_.n_seq_max) + ")");
}

int Session::seq_len(int seq) const {
    check_seq(seq);
    std::lock_guard<std::mutex> lock(mutex_);
    return kv_.seq_len(seq);
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
            model::forward(*model_, kv_, pool_, buf_, seq, tokens.data() + b, pos, nb, out, all_logits);
        }
    } catch (...) {
        kv_.seq_keep(seq, int(n_past));  // nothing appended on failure
        throw;
    }
}

void Session::seq_keep(int seq, int n) {
    check_seq(seq);
    if (n < 0) throw std::invalid_argument("seq_keep: n must be >= 0, got " + std::to_string(n));
    std::lock_guard<std::mutex> lock(mutex_);
    kv_.seq_keep(seq, n);
}

}  // namespace qrt
