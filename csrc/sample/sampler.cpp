// The sampler chain, step by step. Each step mirrors the llama.cpp function named in its comment
// (src/llama-sampler.cpp of the llama.cpp vendored in llama-cpp-python 0.3.36), including the float/double
// precision of its sums, so that the same candidates reach the draw in the same order.
#include "sample/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

namespace qrt {

namespace {

[[noreturn]] void bad_param(const char* name, double value, const char* allowed) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", value);
    throw std::invalid_argument(std::string(name) + " must be " + allowed + ", got " + buf);
}

// Descending logit, then ascending id: a strict total order, so results never depend on the sort.
bool better(const TokenLogit& a, const TokenLogit& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Moves the k best to the front, sorted; the rest (none better than those) follows in some order.
void sort_top(Candidates& c, size_t k) {
    k = std::min(k, c.size);
    if (k == 0) return;
    if (k > 256) {
        if (k < c.size) std::nth_element(c.begin(), c.begin() + ptrdiff_t(k) - 1, c.end(), better);
        std::sort(c.begin(), c.begin() + ptrdiff_t(k), better);
        return;
    }
    // Heap select: a heap of the k best so far, worst on top. Most candidates lose one float compare
    // against the worst kept logit, so this is about one pass over the array.
    TokenLogit* heap = c.data;
    std::make_heap(heap, heap + k, better);
    float worst = heap[0].logit;
    for (size_t i = k; i < c.size; ++i) {
        if (c.data[i].logit < worst || !better(c.data[i], heap[0])) continue;
        std::pop_heap(heap, heap + k, better);
        std::swap(heap[k - 1], c.data[i]);
        std::push_heap(heap, heap + k, better);
        worst = heap[0].logit;
    }
    std::sort_heap(heap, heap + k, better);
}

void check_finite_max(float m) {
    if (!std::isfinite(m))
        throw std::runtime_error(m < 0 ? "every candidate token has logit -inf; nothing can be sampled"
                                       : "a penalized logit overflowed to +inf");
}

void check_token(int32_t token, int32_t n_vocab) {
    if (token < 0 || token >= n_vocab)
        throw std::invalid_argument("token id " + std::to_string(token) + " is outside [0, " +
                                    std::to_string(n_vocab) + ")");
}

}  // namespace

void SamplingParams::validate(double temperature, int64_t top_k, double top_p, double min_p,
                              double repeat_penalty, double frequency_penalty, double presence_penalty,
                              int64_t penalty_last_n) {
    if (!(temperature >= 0.0f) || !std::isfinite(temperature))
        bad_param("temperature", temperature, "a finite number >= 0 (0 = greedy)");
    if (top_k < 0) bad_param("top_k", double(top_k), ">= 0 (0 = off)");
    if (!(top_p > 0.0f && top_p <= 1.0f)) bad_param("top_p", top_p, "in (0, 1] (1 = off)");
    if (!(min_p >= 0.0f && min_p <= 1.0f)) bad_param("min_p", min_p, "in [0, 1] (0 = off)");
    if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty))
        bad_param("repeat_penalty", repeat_penalty, "a finite number > 0 (1 = off)");
    if (!std::isfinite(frequency_penalty)) bad_param("frequency_penalty", frequency_penalty, "finite");
    if (!std::isfinite(presence_penalty)) bad_param("presence_penalty", presence_penalty, "finite");
    if (penalty_last_n < 0 || penalty_last_n > kMaxPenaltyLastN)
        bad_param("penalty_last_n", double(penalty_last_n), "in [0, 1048576] (0 = off)");
}

void SamplingParams::validate() const {
    validate(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty,
             penalty_last_n);
}

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab) : params_(params), n_vocab_(n_vocab) {
    params_.validate();
    if (n_vocab <= 0) throw std::invalid_argument("n_vocab must be > 0, got " + std::to_string(n_vocab));
    cand_.resize(size_t(n_vocab));
    probs_.resize(size_t(n_vocab));
    ring_.resize(size_t(params_.penalty_last_n));
    window_.resize(size_t(params_.penalty_last_n));
    reseed();
}

void Sampler::reseed() {
    seed_ = params_.has_seed ? params_.seed : std::random_device{}();
    rng_.seed(seed_);
}

void Sampler::reset() {
    ring_head_ = ring_size_ = 0;
    reseed();
}

void Sampler::accept(int32_t token) {
    check_token(token, n_vocab_);
    if (ring_.empty()) return;
    ring_[ring_head_] = token;
    ring_head_ = (ring_head_ + 1) % ring_.size();
    ring_size_ = std::min(ring_size_ + 1, ring_.size());
}

void Sampler::accept(std::span<const int32_t> tokens) {
    for (int32_t t : tokens) check_token(t, n_vocab_);  // all or nothing
    for (int32_t t : tokens) accept(t);
}

void Sampler::set_suppressed(std::span<const int32_t> tokens) {
    for (int32_t t : tokens) check_token(t, n_vocab_);
    suppressed_.assign(tokens.begin(), tokens.end());
}

Candidates Sampler::load(const float* logits, int32_t n_vocab, TokenLogit* cand) {
    constexpr float inf = std::numeric_limits<float>::infinity();
    bool bad = false;
    for (int32_t i = 0; i < n_vocab; ++i) {
        const float v = logits[i];
        cand[i] = {i, v};
        bad |= !(v < inf);  // NaN or +inf
    }
    if (bad) {
        for (int32_t i = 0; i < n_vocab; ++i) {
            if (std::isnan(logits[i]))
                throw std::runtime_error("logits contain NaN (first at token " + std::to_string(i) +
                                         "); the model produced invalid values");
            if (logits[i] == inf)
                throw std::runtime_error("logits contain +inf (first at token " + std::to_string(i) +
                                         "); the model produced invalid values");
        }
    }
    return {cand, size_t(n_vocab), false};
}

// llama_sampler_penalties_apply: for every token among the last penalty_last_n accepted, with count c:
// logit = logit <= 0 ? logit * repeat : logit / repeat; logit -= c * frequency + presence.
void Sampler::penalties(Candidates& c) {
    if (!params_.penalties_enabled() || ring_size_ == 0) return;
    std::copy(ring_.begin(), ring_.begin() + ptrdiff_t(ring_size_), window_.begin());
    const auto end = window_.begin() + ptrdiff_t(ring_size_);
    std::sort(window_.begin(), end);
    for (auto it = window_.begin(); it != end;) {
        const int32_t token = *it;
        const auto run_end = std::upper_bound(it, end, token);
        const int count = int(run_end - it);
        it = run_end;

        float& logit = c.data[token].logit;  // vocabulary order: data[i].id == i
        logit = logit <= 0.0f ? logit * params_.repeat_penalty : logit / params_.repeat_penalty;
        logit -= float(count) * params_.frequency_penalty + float(count > 0) * params_.presence_penalty;
    }
}

// llama_sampler_top_k_impl
void Sampler::top_k(Candidates& c, int32_t k) {
    if (k <= 0) return;
    const size_t n = std::min(size_t(k), c.size);
    if (!c.sorted) sort_top(c, n);
    c.size = n;
    c.sorted = true;
}

// llama_sampler_top_p_apply: softmax over the candidates (float sum in their current order), then the
// shortest sorted prefix whose cumulative probability reaches p. An unsorted array is not sorted whole:
// a histogram of the probability mass over logit bins (taken in the same pass as the sum) says about
// how many of the best are needed; those are sorted, and more only in the rare case they fall short.
void Sampler::top_p(Candidates& c, float p) {
    if (p >= 1.0f || c.size == 0) return;
    const float max_l = max_logit(c);
    size_t n_sorted = c.size;
    float sum = 0.0f;
    if (c.sorted) {
        for (const TokenLogit& t : c) sum += std::exp(t.logit - max_l);
    } else {
        constexpr int kBins = 512;
        constexpr float kBinsPerLogit =
            16.0f;  // bins cover the 32 logits below the max, the last takes the rest
        std::array<float, kBins> mass{};
        std::array<uint32_t, kBins> count{};
        for (const TokenLogit& t : c) {
            const float e = std::exp(t.logit - max_l);
            sum += e;
            const int bin = int(std::min((max_l - t.logit) * kBinsPerLogit, float(kBins - 1)));
            mass[size_t(bin)] += e;
            ++count[size_t(bin)];
        }
        size_t need = 0;
        float acc = 0.0f;
        for (size_t b = 0; b < kBins; ++b) {
            acc += mass[b];
            need += count[b];
            if (acc >= p * sum) {
                if (b + 1 < kBins) need += count[b + 1];  // margin for rounding
                break;
            }
        }
        n_sorted = std::min(c.size, need);
        sort_top(c, n_sorted);
    }
    size_t keep = c.size;
    float cum = 0.0f;
    for (size_t i = 0; i < c.size; ++i) {
        if (i == n_sorted) {  // the estimate fell short: sort more of the rest
            Candidates rest{c.data + n_sorted, c.size - n_sorted, false};
            const size_t block = std::min(rest.size, std::max<size_t>(256, n_sorted));
            sort_top(rest, block);
            n_sorted += block;
        }
        cum += std::exp(c.data[i].logit - max_l) / sum;
        if (cum >= p) {
            keep = i + 1;
            break;
        }
    }
    c.size = keep;
    c.sorted = true;
}

// llama_sampler_min_p_apply
void Sampler::min_p(Candidates& c, float p) {
    if (p <= 0.0f || c.size == 0) return;
    const float min_logit = max_logit(c) + std::log(p);
    if (c.sorted) {
        size_t i = 1;  // the first always stays
        while (i < c.size && c.data[i].logit >= min_logit) ++i;
        c.size = i;
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < c.size; ++i)
        if (c.data[i].logit >= min_logit) c.data[kept++] = c.data[i];
    c.size = kept;
}

// llama_sampler_temp_impl
void Sampler::temperature(Candidates& c, float t) {
    if (c.size == 0) return;
    if (t <= 0.0f) {
        const int32_t best = argmax(c);
        const auto it =
            std::find_if(c.begin(), c.end(), [best](const TokenLogit& x) { return x.id == best; });
        c.data[0] = *it;
        c.size = 1;
        c.sorted = true;
        return;
    }
    for (TokenLogit& x : c) x.logit /= t;
}

int32_t Sampler::argmax(const Candidates& c) {
    if (c.size == 0 || c.sorted) {
        max_logit(c);  // throws when nothing can be chosen
        return c.data[0].id;
    }
    const TokenLogit* best = c.data;
    for (const TokenLogit& x : c)
        if (x.logit >= best->logit && better(x, *best)) best = &x;
    check_finite_max(best->logit);
    return best->id;
}

float Sampler::max_logit(const Candidates& c) {
    if (c.size == 0) throw std::runtime_error("no candidate tokens left to sample from");
    float m = c.data[0].logit;
    if (!c.sorted)
        for (const TokenLogit& x : c) m = std::max(m, x.logit);
    check_finite_max(m);
    return m;
}

// llama_sampler_dist_apply: p_i = exp(l_i - max) in float, summed in double; one uniform draw in [0, 1)
// (also when one candidate is left, to keep the RNG stream aligned); the first i whose running sum
// reaches draw * sum.
int32_t Sampler::dist(const Candidates& c) {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const float max_l = max_logit(c);
    if (c.size == 1) {
        uniform(rng_);
        return c.data[0].id;
    }
    double sum = 0.0;
    for (size_t i = 0; i < c.size; ++i) {
        probs_[i] = std::exp(c.data[i].logit - max_l);
        sum += probs_[i];
    }
    const double target = sum * uniform(rng_);
    double run = 0.0;
    for (size_t i = 0; i < c.size; ++i) {
        run += probs_[i];
        if (run >= target) return c.data[i].id;
    }
    return c.data[c.size - 1].id;  // rounding; llama.cpp does the same
}

Candidates Sampler::prepare(const float* logits) {
    Candidates c = load(logits, n_vocab_, cand_.data());
    for (int32_t t : suppressed_) c.data[t].logit = -std::numeric_limits<float>::infinity();
    penalties(c);
    return c;
}

Candidates Sampler::candidates(const float* logits) {
    Candidates c = prepare(logits);
    if (params_.greedy()) {
        temperature(c, 0.0f);
        return c;
    }
    top_k(c, params_.top_k);
    top_p(c, params_.top_p);
    min_p(c, params_.min_p);
    temperature(c, params_.temperature);
    return c;
}

int32_t Sampler::sample(const float* logits) {
    if (params_.greedy()) return argmax(prepare(logits));
    return dist(candidates(logits));
}

}  // namespace qrt
