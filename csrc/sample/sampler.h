// Token sampling: logits in, one token id out.
//
// The chain is llama.cpp's (FORMATS.md §7.1, §8), with llama.cpp's defaults:
//
//   suppress → penalties → top_k → top_p → min_p → temperature → dist
//
// Temperature is applied last, so top-p and min-p see the (penalized) raw logits. temperature <= 0 is
// greedy: the argmax of the penalized logits (lowest id on ties), no random draw.
//
// Each step is a small function over a Candidates array (a view of the sampler's own buffer). A step
// either keeps the vocabulary order or leaves the array sorted by descending logit (ties: lower id first)
// and says so in `sorted`; the draw walks the array in that order, like llama.cpp's, so a given seed
// picks the token llama.cpp's chain would pick (same libstdc++: uniform_real_distribution<double> over
// std::mt19937 is not specified bit for bit by the standard).
//
// Penalties are counted over the last `penalty_last_n` accepted tokens; accept the prompt tokens too,
// as llama.cpp does. After construction nothing allocates: sample() reuses the buffers.
// A Sampler is not thread-safe; use one per sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace qrt {

struct SamplingParams {
    float temperature = 0.8f;     // >= 0; 0 = greedy
    int32_t top_k = 40;           // >= 0; 0 = off
    float top_p = 0.95f;          // in (0, 1]; 1 = off
    float min_p = 0.05f;          // in [0, 1]; 0 = off
    float repeat_penalty = 1.0f;  // > 0; 1 = off
    float frequency_penalty = 0;  // finite; 0 = off
    float presence_penalty = 0;   // finite; 0 = off
    int32_t penalty_last_n = 64;  // in [0, kMaxPenaltyLastN]; 0 = off
    uint32_t seed = 0;            // used when has_seed
    bool has_seed = false;        // false: a random seed from std::random_device

    static constexpr int32_t kMaxPenaltyLastN = 1 << 20;

    // Throws std::invalid_argument naming the parameter, its value and the allowed range. Never clamps.
    void validate() const;
    // The same checks on double-precision values, for callers (Python) that hold doubles: what the user
    // passed is checked before it is rounded to float.
    static void validate(double temperature, int64_t top_k, double top_p, double min_p, double repeat_penalty,
                         double frequency_penalty, double presence_penalty, int64_t penalty_last_n);
    bool greedy() const { return temperature <= 0.0f; }
    bool penalties_enabled() const {
        return penalty_last_n > 0 &&
               (repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f);
    }
};

struct TokenLogit {
    int32_t id;
    float logit;
};

// A view of the candidates still in the running. sorted: descending logit, ties broken by lower id.
struct Candidates {
    TokenLogit* data = nullptr;
    size_t size = 0;
    bool sorted = false;

    TokenLogit* begin() const { return data; }
    TokenLogit* end() const { return data + size; }
};

class Sampler {
  public:
    // Throws std::invalid_argument for invalid params or n_vocab <= 0.
    Sampler(const SamplingParams& params, int32_t n_vocab);

    // Runs the chain on logits[0, n_vocab) and returns the chosen token id. Does not accept it: call
    // accept() with the token that is actually appended. Throws std::runtime_error when the logits hold a
    // NaN or +inf, or when every candidate is -inf.
    int32_t sample(const float* logits);

    // The chain without the draw: the tokens the draw would choose from, their logits after temperature,
    // in the order the draw walks them (greedy: the argmax alone). Valid until the next call; touches
    // neither the RNG nor the history.
    Candidates candidates(const float* logits);

    // Records tokens for the penalties (ring of the last penalty_last_n). Throws std::invalid_argument for
    // an id outside [0, n_vocab).
    void accept(int32_t token);
    void accept(std::span<const int32_t> tokens);

    // Tokens whose logit is set to -inf before everything else (e.g. end-of-generation tokens for
    // ignore_eos, like llama.cpp's logit bias). Replaces the previous set; throws std::invalid_argument
    // for an id outside [0, n_vocab).
    void set_suppressed(std::span<const int32_t> tokens);

    // Forgets the accepted tokens and re-seeds the RNG (a fresh random seed when there is none).
    void reset();

    const SamplingParams& params() const { return params_; }
    int32_t n_vocab() const { return n_vocab_; }
    uint32_t seed() const { return seed_; }  // the seed in use (the drawn one when params had none)
    size_t history_size() const { return ring_size_; }

    // --- the steps; each is usable alone on any Candidates array ---
    // Copies logits into cand (vocabulary order); throws std::runtime_error on NaN / +inf.
    static Candidates load(const float* logits, int32_t n_vocab, TokenLogit* cand);
    // Keeps the k best (k <= 0: no-op), sorted.
    static void top_k(Candidates& c, int32_t k);
    // Keeps the smallest sorted prefix whose softmax mass is >= p (p >= 1: no-op).
    static void top_p(Candidates& c, float p);
    // Keeps logit >= max + log(p), i.e. prob >= p * max prob (p <= 0: no-op); keeps the order.
    static void min_p(Candidates& c, float p);
    // t > 0: logit /= t. t <= 0: keeps the argmax alone.
    static void temperature(Candidates& c, float t);
    // The best candidate: highest logit, lowest id on ties.
    static int32_t argmax(const Candidates& c);
    // Largest logit; throws std::runtime_error if it is not finite (all -inf, or overflow).
    static float max_logit(const Candidates& c);

  private:
    // Penalties from the history. Requires cand in vocabulary order (cand.data[i].id == i), as load() makes
    // it.
    void penalties(Candidates& c);
    // One uniform draw over softmax(c) walking the array in order (llama_sampler_dist_apply).
    int32_t dist(const Candidates& c);
    Candidates prepare(const float* logits);  // load → suppress → penalties
    void reseed();

    SamplingParams params_;
    int32_t n_vocab_;
    uint32_t seed_ = 0;
    std::mt19937 rng_;

    std::vector<TokenLogit> cand_;  // n_vocab
    std::vector<float> probs_;      // n_vocab, scratch for dist
    std::vector<int32_t> ring_;     // penalty_last_n accepted tokens
    size_t ring_head_ = 0, ring_size_ = 0;
    std::vector<int32_t> window_;  // scratch: the ring, sorted
    std::vector<int32_t> suppressed_;
};

}  // namespace qrt
