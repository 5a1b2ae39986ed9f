// Scheduler: continuous batching over one Session, driven by a background thread.
//
// Requests join and leave between steps. A step evaluates, in one Session::eval_batch call, one token for
// every decoding sequence (decode first), then prompt chunks of sequences still prefilling and of newly
// admitted ones, up to a per-step prompt-token budget (chunked prefill: a long prompt never stalls running
// streams for more than one budget). The budget also shrinks, down to kMinPromptChunk tokens, so that a step
// beside decoding streams takes at most max_step_slowdown times a decode-only step and max_step_seconds,
// at the prompt rate measured on recent large steps: the streams' inter-token latency stays within a small
// multiple of its median whatever arrives, on any CPU and model size. After the step every sequence whose
// tokens are all evaluated samples its next token with its own Sampler (llama.cpp's chain, its own seed), and
// the scheduler turns the token into text (the vocabulary's pieces, given at construction), runs the
// request's StopMatcher, and checks end-of-generation tokens, max_tokens and the context. What is safe to
// emit goes to one event queue that consumers drain with wait_events().
//
// Sequences are Session sequence ids [first_seq, first_seq + n_seq) ("slots"); others stay free for other
// users of the Session. Admission is by free KV blocks: a waiting request enters when a slot is free and
// the pool holds its remaining prompt (plus a block). When a running sequence needs a block and the pool is
// dry, the youngest running request (latest submitted) is preempted: its blocks go back to the pool and it
// waits at the head of the queue, to be recomputed (prompt and generated tokens) when there is room again;
// its sampler state is kept, so its output is unchanged. Cancellation (cancel(), e.g. a client that went
// away or Ctrl-C) frees the sequence's blocks at the start of the next step (at once when idle).
//
// Prefix cache: every full block a request computes is pinned in the KV cache under a hash of all the
// tokens up to its end (vLLM's scheme: hash(parent's hash, its 16 tokens)); a request admitted later whose
// tokens start with the same blocks attaches them (shared by reference count) and evaluates only the rest
// (always at least its last token, for the logits). Blocks no sequence holds stay cached until the pool
// needs them, the least recently released first (kv/kv_cache.h).
//
// Prompt log-probabilities (OpenAI's `echo` with `logprobs`, lm-evaluation-harness's log-likelihoods): a
// request that asks for them takes no blocks from the prefix cache (their logits are needed), evaluates its
// prompt in chunks of at most kPromptLogprobsChunk tokens with a logits row for every token, and emits one
// event (prompt = true) per prompt token after the first, in order, before any generated token.
//
// Batch invariance: the forward gives each token the same bits whatever else is in the batch, and every
// per-request state (sampler, RNG, stop matcher) is the request's own, so a request's tokens do not depend
// on the other requests, on preemption or on how its prompt was chunked.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/session.h"
#include "sample/sampler.h"
#include "sample/stop.h"

namespace qrt {

struct SchedulerParams {
    int first_seq = 0;                // the Session sequence ids this scheduler uses ...
    int n_seq = 0;                    // ... first_seq .. first_seq + n_seq - 1; 0: up to n_seq_max
    int prefill_budget = 256;         // prompt tokens per step while other sequences decode, >= 1 ...
    double max_step_slowdown = 1.75;  // ... fewer when the step would take longer than this many decode-only
    double max_step_seconds = 0.5;    // steps or than this, as measured (0: no such limit)
    int prefill_budget_idle = 0;      // ... and when none decodes; 0: the Session's n_batch
    size_t max_waiting = 1 << 20;     // submit() refuses more waiting requests (QueueFullError)
    bool prefix_cache = true;         // share full blocks of identical prefixes between requests
};

struct RequestOptions {
    std::vector<int32_t> prompt;  // token ids, 1 .. n_ctx - 1 of them
    SamplingParams sampling;
    int max_tokens = 256;           // >= 0
    std::vector<int32_t> eog;       // tokens that end generation (not emitted); empty for ignore_eos
    std::vector<int32_t> suppress;  // tokens never sampled (ignore_eos: the end-of-generation tokens)
    std::vector<std::string> stop;  // stop strings (non-empty), matched on the output bytes
    int n_logprobs = -1;         // -1: none; 0: each sampled token's log-probability; N <= 20: and the top N
    int n_prompt_logprobs = -1;  // the same for every prompt token after the first (max_tokens may be 0)
};

// The least prompt tokens a step takes beside decoding streams, however slow (newcomers still progress).
constexpr int kMinPromptChunk = 4;

// Prompt tokens per step of a request that wants their log-probabilities (bounds the logits buffer).
constexpr int kPromptLogprobsChunk = 64;

struct TokenLogprob {
    int32_t token;
    float logprob;  // log-softmax of the model's raw logits (before penalties and temperature)
};

enum class Finish : uint8_t {
    None = 0,   // more to come
    Stop,       // an end-of-generation token or a stop string
    Length,     // max_tokens, or the context is full
    Cancelled,  // cancel() or shutdown
    Error,      // the sampler refused the logits (NaN), or the forward failed; `error` says why
};

const char* finish_name(Finish f);

// One token of one request (token >= 0), and/or its end (finish != None; the last event of a request).
struct TokenEvent {
    int64_t request = 0;
    int32_t token = -1;
    std::string text;  // output bytes now safe to emit (may be empty: held back by the stop matcher)
    Finish finish = Finish::None;
    int n_prompt = 0, n_generated = 0;  // usage so far
    std::string error;
    float logprob = 0;              // the token's, when the request asked for logprobs
    std::vector<TokenLogprob> top;  // the n_logprobs most likely tokens, most likely first
    bool prompt = false;            // a prompt token's log-probability (not output; text is empty)
};

// submit() when max_waiting requests are already waiting.
class QueueFullError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct SchedulerStats {
    int running = 0, waiting = 0;     // requests holding a slot / queued
    int kv_blocks = 0, kv_free = 0;   // the Session's pool; free includes evictable cached blocks
    int kv_cached = 0;                // cached blocks no sequence holds (evictable)
    int64_t prefix_hit_tokens = 0;    // prompt tokens taken from the prefix cache at admission
    int64_t prefix_query_tokens = 0;  // prompt tokens at admission (hit rate: hits / queries)
    int64_t steps = 0;                // eval_batch calls
    int64_t tokens_decoded = 0;       // sampled tokens
    int64_t tokens_prefilled = 0;     // prompt (and recomputed) tokens evaluated
    int64_t preemptions = 0;
    int64_t max_batch = 0;  // most tokens in one step
};

class Scheduler {
  public:
    // `pieces`: each token id's bytes (llama_token_to_piece with special tokens rendered), n_vocab of them.
    // Throws std::invalid_argument for bad params. Starts the stepping thread.
    Scheduler(Session& session, std::vector<std::string> pieces, SchedulerParams params);
    ~Scheduler();  // shutdown()
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Queues a request and returns its id (> 0). Throws std::invalid_argument for an empty prompt, token
    // ids out of range, a prompt of n_ctx tokens or more ("prompt has N tokens, context is M"), one the
    // pool could never hold, or bad sampling params; QueueFullError when the queue is full; and
    // std::runtime_error after shutdown(). max_tokens 0 finishes at once (Length) without evaluating.
    int64_t submit(RequestOptions options);
    // Ends a request: it emits a last Cancelled event and its blocks go back to the pool within a step.
    // Unknown or finished ids are ignored.
    void cancel(int64_t request);
    // Moves every pending event into `out` (appending), waiting up to timeout_s for at least one. Returns
    // false when the scheduler is shut down and no events are left.
    bool wait_events(std::vector<TokenEvent>& out, double timeout_s);
    // Cancels everything, stops the thread. Idempotent.
    void shutdown();

    SchedulerStats stats() const;
    const SchedulerParams& params() const { return params_; }

  private:
    struct Request;
    void run();
    void step();
    void admit_new();  // moves submissions and cancellations into the scheduler thread's state
    void finish(Request& r, Finish f, std::string error = {});
    void preempt(Request& r);
    void release_slot(Request& r);
    void emit(TokenEvent ev);
    int decoding_budget(int n_decoding) const;

    Session& session_;
    std::vector<std::string> pieces_;
    SchedulerParams params_;
    int n_ctx_ = 0;
    int32_t n_vocab_ = 0;

    // Shared with callers, under mutex_.
    mutable std::mutex mutex_;
    std::condition_variable work_cv_;    // the thread waits here when idle
    std::condition_variable events_cv_;  // consumers wait here
    std::deque<std::unique_ptr<Request>> submitted_;
    std::vector<int64_t> cancelled_;
    std::deque<TokenEvent> events_;
    bool stopping_ = false;
    bool finished_ = false;  // the thread has ended: no more events after those queued
    int64_t next_id_ = 1;
    uint64_t next_order_ = 0;
    SchedulerStats stats_;
    int n_waiting_shared_ = 0;  // submitted_ + waiting_, for max_waiting

    // The stepping thread's own state.
    std::deque<std::unique_ptr<Request>> waiting_;   // FIFO; preempted requests go back to the front
    std::vector<std::unique_ptr<Request>> running_;  // in arrival order (oldest first)
    std::vector<int> free_slots_;
    std::vector<int32_t> batch_tokens_, batch_seqs_;
    std::vector<uint8_t> batch_want_;  // per token: a logits row (prompt log-probabilities)
    std::vector<Request*> batch_reqs_;
    std::vector<size_t> batch_row_;  // per request in the batch: its first logits row
    std::vector<float> logits_;      // [rows][n_vocab]: one per sequence, more for prompt log-probabilities
    struct PrefixEntry {
        int32_t block;
        uint32_t generation;  // the block's generation when pinned: stale once evicted
        int32_t tokens[kKvBlockSize];
    };
    std::unordered_map<uint64_t, PrefixEntry> prefix_;  // chain hash -> cached block
    std::vector<int32_t> match_;
    std::vector<int32_t> order_;      // [n_vocab] scratch for the top logprobs
    double seconds_per_token_ = 0;    // of steps of 32 tokens or more (moving average); 0: none yet
    double decode_step_seconds_ = 0;  // of steps of decoding sequences only (moving average); 0: none yet
    void logprobs(const float* row, int32_t token, int n, TokenEvent& ev);
    // Emits r's prompt log-probabilities from the rows of the tokens it evaluated from position `first`.
    void prompt_logprobs(Request& r, int first, const float* rows);
    int match_prefix(Request& r);      // attaches r's cached leading blocks; returns how many
    void register_blocks(Request& r);  // pins r's newly full blocks
    std::vector<TokenEvent> out_;
    SchedulerStats work_;  // copied into stats_ after each step

    std::mutex join_mutex_;
    std::thread thread_;
};

}  // namespace qrt
