#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <numeric>
#include <stdexcept>

namespace qrt {

namespace {

int blocks_for(int64_t n_tokens) {
    return int((n_tokens + kKvBlockSize - 1) / kKvBlockSize);
}

constexpr uint64_t kChainSeed = 0x51ed270b27a3c9d1ull;

uint64_t mix64(uint64_t x) {  // splitmix64's finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// The hash of a block given its parent's: covers every token from the start of the sequence.
uint64_t chain_hash(uint64_t parent, const int32_t* tokens) {
    uint64_t h = parent;
    for (int i = 0; i < kKvBlockSize; ++i)
        h = mix64(h ^ (uint64_t(uint32_t(tokens[i])) + 0x9e3779b97f4a7c15ull));
    return h;
}

}  // namespace

const char* finish_name(Finish f) {
    switch (f) {
        case Finish::None:
            return "";
        case Finish::Stop:
            return "stop";
        case Finish::Length:
            return "length";
        case Finish::Cancelled:
            return "cancelled";
        case Finish::Error:
            return "error";
    }
    return "";
}

struct Scheduler::Request {
    Request(int64_t id_, uint64_t order_, RequestOptions o, int32_t n_vocab)
        : id(id_),
          order(order_),
          opt(std::move(o)),
          sampler(opt.sampling, n_vocab),
          matcher(opt.stop),
          tokens(opt.prompt),
          n_prompt(int(opt.prompt.size())) {}

    int64_t id;
    uint64_t order;  // arrival: lower is older
    RequestOptions opt;
    Sampler sampler;
    StopMatcher matcher;
    std::vector<int32_t> tokens;  // prompt, then the generated tokens (all recomputed after a preemption)
    int n_prompt;
    int n_generated = 0;
    int slot = -1;                // Session sequence id while running
    int n_cached = 0;             // tokens[0, n_cached) are in the slot's cache
    int plan_n = 0;               // tokens to evaluate in this step
    int n_registered = 0;         // leading full blocks known to the prefix cache
    uint64_t chain = kChainSeed;  // the chain hash of those blocks
    int prompt_lp_next = 1;       // the next prompt position whose log-probability is due
    bool preempted = false, done = false;

    int todo() const { return int(tokens.size()) - n_cached; }
    bool decoding() const { return n_generated > 0 && todo() == 1; }
    bool wants_prompt_logprobs() const { return opt.n_prompt_logprobs >= 0 && n_cached < n_prompt; }
    // Tokens it may evaluate in one step with `budget` left.
    int chunk(int budget) const {
        return std::min({todo(), budget, wants_prompt_logprobs() ? kPromptLogprobsChunk : todo()});
    }
};

Scheduler::Scheduler(Session& session, std::vector<std::string> pieces, SchedulerParams params)
    : session_(session), pieces_(std::move(pieces)), params_(params) {
    const int n_seq_max = session.params().n_seq_max;
    n_ctx_ = session.params().n_ctx;
    n_vocab_ = int32_t(session.hparams().n_vocab);
    if (int64_t(pieces_.size()) != n_vocab_)
        throw std::invalid_argument("scheduler: got " + std::to_string(pieces_.size()) +
                                    " token pieces for " + std::to_string(n_vocab_) + " tokens");
    if (params_.first_seq < 0 || params_.first_seq >= n_seq_max)
        throw std::invalid_argument("scheduler: first_seq " + std::to_string(params_.first_seq) +
                                    " is out of range [0, " + std::to_string(n_seq_max) + ")");
    if (params_.n_seq == 0) params_.n_seq = n_seq_max - params_.first_seq;
    if (params_.n_seq < 1 || params_.first_seq + params_.n_seq > n_seq_max)
        throw std::invalid_argument("scheduler: n_seq " + std::to_string(params_.n_seq) + " from sequence " +
                                    std::to_string(params_.first_seq) + " exceeds n_seq_max " +
                                    std::to_string(n_seq_max));
    if (params_.prefill_budget < 1)
        throw std::invalid_argument("scheduler: prefill_budget must be >= 1, got " +
                                    std::to_string(params_.prefill_budget));
    if (params_.prefill_budget_idle <= 0) params_.prefill_budget_idle = session.params().n_batch;
    if (session.has_window_cache()) params_.prefix_cache = false;  // its blocks are not shared (yet)
    for (int s = params_.n_seq - 1; s >= 0; --s) free_slots_.push_back(params_.first_seq + s);
    logits_.resize(size_t(params_.n_seq) * size_t(n_vocab_));
    order_.resize(size_t(n_vocab_));
    batch_reqs_.reserve(size_t(params_.n_seq));
    running_.reserve(size_t(params_.n_seq));
    work_.kv_blocks = stats_.kv_blocks = session.n_kv_blocks();
    thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
    shutdown();
}

int64_t Scheduler::submit(RequestOptions o) {
    const int64_t n = int64_t(o.prompt.size());
    if (n == 0) throw std::invalid_argument("the prompt is empty");
    for (size_t i = 0; i < o.prompt.size(); ++i)
        if (o.prompt[i] < 0 || o.prompt[i] >= n_vocab_)
            throw std::invalid_argument("token id " + std::to_string(o.prompt[i]) + " at index " +
                                        std::to_string(i) + " is out of range [0, " +
                                        std::to_string(n_vocab_) + ")");
    if (n >= n_ctx_)
        throw std::invalid_argument("prompt has " + std::to_string(n) + " tokens, context is " +
                                    std::to_string(n_ctx_));
    if (blocks_for(n + 1) > session_.n_kv_blocks())
        throw std::invalid_argument("prompt has " + std::to_string(n) + " tokens, the KV pool holds " +
                                    std::to_string(int64_t(session_.n_kv_blocks()) * kKvBlockSize));
    if (o.max_tokens < 0)
        throw std::invalid_argument("max_tokens must be >= 0, got " + std::to_string(o.max_tokens));
    for (int32_t t : o.eog)
        if (t < 0 || t >= n_vocab_) throw std::invalid_argument("eog token id out of range");
    if (o.n_logprobs < -1 || o.n_logprobs > 20)
        throw std::invalid_argument("logprobs must be in [0, 20], got " + std::to_string(o.n_logprobs));
    if (o.n_prompt_logprobs < -1 || o.n_prompt_logprobs > 20)
        throw std::invalid_argument("prompt logprobs must be in [0, 20], got " +
                                    std::to_string(o.n_prompt_logprobs));
    auto r = std::make_unique<Request>(0, 0, std::move(o), n_vocab_);  // validates sampling and stops
    r->sampler.set_suppressed(r->opt.suppress);
    r->sampler.accept(r->opt.prompt);  // penalties count the prompt, as llama.cpp does
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw std::runtime_error("the scheduler is shut down");
    if (size_t(n_waiting_shared_) + submitted_.size() >= params_.max_waiting)
        throw QueueFullError("too many waiting requests (" + std::to_string(params_.max_waiting) + ")");
    r->id = next_id_++;
    r->order = next_order_++;
    const int64_t id = r->id;
    if (r->opt.max_tokens == 0 && r->opt.n_prompt_logprobs < 0) {
        TokenEvent ev;
        ev.request = id;
        ev.finish = Finish::Length;
        ev.n_prompt = r->n_prompt;
        events_.push_back(std::move(ev));
        events_cv_.notify_all();
        return id;
    }
    submitted_.push_back(std::move(r));
    work_cv_.notify_one();
    return id;
}

void Scheduler::cancel(int64_t request) {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_.push_back(request);
    work_cv_.notify_one();
}

bool Scheduler::wait_events(std::vector<TokenEvent>& out, double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto timeout = std::chrono::duration<double>(std::max(0.0, timeout_s));
    events_cv_.wait_for(lock, timeout, [&] { return !events_.empty() || finished_; });
    const bool any = !events_.empty();
    for (auto& ev : events_) out.push_back(std::move(ev));
    events_.clear();
    return any || !finished_;
}

void Scheduler::shutdown() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        work_cv_.notify_all();
    }
    std::lock_guard<std::mutex> join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    events_cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
    const int evictable = session_.n_evictable_kv_blocks();
    const int free = session_.n_free_kv_blocks() + evictable;
    std::lock_guard<std::mutex> lock(mutex_);
    SchedulerStats s = stats_;
    s.kv_free = free;
    s.kv_cached = evictable;
    return s;
}

void Scheduler::emit(TokenEvent ev) {
    out_.push_back(std::move(ev));
}

void Scheduler::release_slot(Request& r) {
    if (r.slot < 0) return;
    session_.clear(r.slot);
    free_slots_.push_back(r.slot);
    r.slot = -1;
    r.n_cached = 0;
    r.n_registered = 0;
    r.chain = kChainSeed;
}

int Scheduler::match_prefix(Request& r) {
    if (!params_.prefix_cache || r.opt.n_prompt_logprobs >= 0) return 0;
    match_.clear();
    uint64_t h = kChainSeed;
    const int k_max = (int(r.tokens.size()) - 1) / kKvBlockSize;  // leave at least one token to evaluate
    for (int i = 0; i < k_max; ++i) {
        const int32_t* t = r.tokens.data() + size_t(i) * kKvBlockSize;
        const uint64_t next = chain_hash(h, t);
        const auto it = prefix_.find(next);
        if (it == prefix_.end()) break;
        const PrefixEntry& e = it->second;
        if (session_.kv_generation(e.block) != e.generation) {  // evicted since
            prefix_.erase(it);
            break;
        }
        if (!std::equal(t, t + kKvBlockSize, e.tokens)) break;  // a 64-bit collision
        match_.push_back(e.block);
        h = next;
    }
    const int k = int(match_.size());
    work_.prefix_query_tokens += int64_t(r.tokens.size());
    if (k == 0) return 0;
    session_.kv_attach(r.slot, match_);
    r.n_cached = k * kKvBlockSize;
    r.n_registered = k;
    r.chain = h;
    work_.prefix_hit_tokens += int64_t(k) * kKvBlockSize;
    return k;
}

void Scheduler::register_blocks(Request& r) {
    if (!params_.prefix_cache) return;
    while ((r.n_registered + 1) * kKvBlockSize <= r.n_cached) {
        const int i = r.n_registered;
        const int32_t* t = r.tokens.data() + size_t(i) * kKvBlockSize;
        const uint64_t h = chain_hash(r.chain, t);
        const auto it = prefix_.find(h);
        if (it == prefix_.end() || session_.kv_generation(it->second.block) != it->second.generation) {
            PrefixEntry e;
            e.block = session_.kv_pin(r.slot, i);
            e.generation = session_.kv_generation(e.block);
            std::copy(t, t + kKvBlockSize, e.tokens);
            prefix_[h] = e;
        }
        r.chain = h;
        ++r.n_registered;
    }
    if (prefix_.size() > 2 * size_t(session_.n_kv_blocks()))  // drop the entries of evicted blocks
        std::erase_if(prefix_, [&](const auto& kv) {
            return session_.kv_generation(kv.second.block) != kv.second.generation;
        });
}

void Scheduler::finish(Request& r, Finish f, std::string error) {
    TokenEvent ev;
    ev.request = r.id;
    ev.finish = f;
    ev.n_prompt = r.n_prompt;
    ev.n_generated = r.n_generated;
    ev.error = std::move(error);
    if (f == Finish::Length) ev.text = r.matcher.flush();
    emit(std::move(ev));
    release_slot(r);
    r.done = true;
}

void Scheduler::preempt(Request& r) {
    release_slot(r);
    r.plan_n = 0;
    r.preempted = true;
}

void Scheduler::logprobs(const float* row, int32_t token, int n, TokenEvent& ev) {
    float mx = row[0];
    for (int32_t i = 1; i < n_vocab_; ++i) mx = std::max(mx, row[i]);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab_; ++i) sum += std::exp(double(row[i]) - mx);
    const double lse = double(mx) + std::log(sum);
    ev.logprob = float(double(row[token]) - lse);
    if (n <= 0) return;
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + n, order_.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    for (int i = 0; i < n; ++i)
        ev.top.push_back({order_[size_t(i)], float(double(row[order_[size_t(i)]]) - lse)});
}

void Scheduler::prompt_logprobs(Request& r, int first, const float* rows) {
    // Row k holds the logits after position first + k: the distribution of the token at first + k + 1.
    for (int k = 0; k < r.plan_n; ++k) {
        const int pos = first + k + 1;
        if (pos >= r.n_prompt) break;
        if (pos < r.prompt_lp_next) continue;  // emitted before a preemption
        TokenEvent ev;
        ev.request = r.id;
        ev.token = r.tokens[size_t(pos)];
        ev.prompt = true;
        ev.n_prompt = r.n_prompt;
        logprobs(rows + size_t(k) * size_t(n_vocab_), ev.token, r.opt.n_prompt_logprobs, ev);
        emit(std::move(ev));
        r.prompt_lp_next = pos + 1;
    }
}

void Scheduler::admit_new() {
    std::vector<int64_t> cancelled;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& r : submitted_) waiting_.push_back(std::move(r));
        submitted_.clear();
        cancelled.swap(cancelled_);
    }
    if (cancelled.empty()) return;
    std::sort(cancelled.begin(), cancelled.end());
    auto is_cancelled = [&](const Request& r) {
        return std::binary_search(cancelled.begin(), cancelled.end(), r.id);
    };
    for (auto& r : running_)
        if (is_cancelled(*r)) finish(*r, Finish::Cancelled);
    for (auto& r : waiting_)
        if (is_cancelled(*r)) finish(*r, Finish::Cancelled);
    std::erase_if(running_, [](const auto& r) { return r->done; });
    std::erase_if(waiting_, [](const auto& r) { return r->done; });
}

void Scheduler::run() {
    bool idle_wait = false;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            auto has_work = [&] {
                return stopping_ || !submitted_.empty() || !cancelled_.empty() ||
                       (!idle_wait && (!waiting_.empty() || !running_.empty()));
            };
            if (idle_wait)  // no progress last time (the pool is held by someone else): poll gently
                work_cv_.wait_for(lock, std::chrono::milliseconds(2), has_work);
            else
                work_cv_.wait(lock, has_work);
            if (stopping_) break;
        }
        out_.clear();
        admit_new();
        const int64_t before = work_.steps;
        step();
        idle_wait = work_.steps == before && (!waiting_.empty() || !running_.empty());
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& ev : out_) events_.push_back(std::move(ev));
        if (!out_.empty()) events_cv_.notify_all();
        work_.running = int(running_.size());
        work_.waiting = int(waiting_.size());
        n_waiting_shared_ = work_.waiting;
        stats_ = work_;
    }
    out_.clear();
    admit_new();
    for (auto& r : running_) finish(*r, Finish::Cancelled);
    for (auto& r : waiting_) finish(*r, Finish::Cancelled);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& r : submitted_) {
            TokenEvent ev;
            ev.request = r->id;
            ev.finish = Finish::Cancelled;
            ev.n_prompt = r->n_prompt;
            out_.push_back(std::move(ev));
        }
        submitted_.clear();
        for (auto& ev : out_) events_.push_back(std::move(ev));
        events_cv_.notify_all();
    }
    running_.clear();
    waiting_.clear();
}

int Scheduler::decoding_budget(int n_decoding) const {
    const int budget = params_.prefill_budget;
    if (seconds_per_token_ <= 0) return budget;
    double limit = params_.max_step_seconds > 0 ? params_.max_step_seconds : HUGE_VAL;
    if (params_.max_step_slowdown > 0 && decode_step_seconds_ > 0)
        limit = std::min(limit, params_.max_step_slowdown * decode_step_seconds_);
    if (limit == HUGE_VAL) return budget;
    const double decode = decode_step_seconds_ > 0 ? decode_step_seconds_ : n_decoding * seconds_per_token_;
    const double fits = (limit - decode) / seconds_per_token_;
    return int(std::clamp(fits, double(std::min(kMinPromptChunk, budget)), double(budget)));
}

void Scheduler::step() {
    const int n_decoding =
        int(std::count_if(running_.begin(), running_.end(), [](const auto& r) { return r->decoding(); }));
    int budget = n_decoding > 0 ? decoding_budget(n_decoding) : params_.prefill_budget_idle;
    int planned_blocks = 0;
    auto free_blocks = [&] {
        return session_.n_free_kv_blocks() + session_.n_evictable_kv_blocks() - planned_blocks;
    };

    // Gets `need` blocks for r, preempting younger requests (youngest first) while the pool is short.
    // False when even that is not enough: r is then the youngest of those that could give way.
    auto make_room = [&](Request& r, int need) {
        while (need > free_blocks()) {
            Request* victim = nullptr;
            for (auto it = running_.rbegin(); it != running_.rend(); ++it)
                if (!(*it)->preempted && (*it)->order > r.order && (*it)->slot >= 0) {
                    victim = it->get();
                    break;
                }
            if (!victim) return false;
            if (victim->plan_n > 0)
                planned_blocks -= session_.kv_blocks_to_grow(victim->slot, victim->plan_n);
            preempt(*victim);
            ++work_.preemptions;
        }
        return true;
    };

    for (auto& r : running_) r->plan_n = 0;
    // Decode first: one token for every decoding sequence, oldest first.
    for (auto& r : running_) {
        if (r->preempted || !r->decoding()) continue;
        const int need = session_.kv_blocks_to_grow(r->slot, 1);
        if (!make_room(*r, need)) {
            preempt(*r);  // the youngest, and the pool is dry: it waits and is recomputed later
            ++work_.preemptions;
            continue;
        }
        r->plan_n = 1;
        planned_blocks += need;
    }
    // Then prompt chunks of sequences already prefilling, oldest first, under the budget.
    for (auto& r : running_) {
        if (budget <= 0) break;
        if (r->preempted || r->decoding() || r->slot < 0) continue;
        const int n = r->chunk(budget);
        const int need = session_.kv_blocks_to_grow(r->slot, n);
        if (!make_room(*r, need)) continue;  // keeps its blocks and waits for room
        r->plan_n = n;
        planned_blocks += need;
        budget -= n;
    }
    // Preempted requests go back to the head of the queue, oldest first.
    for (auto it = running_.rbegin(); it != running_.rend(); ++it)
        if ((*it)->preempted) {
            (*it)->preempted = false;
            waiting_.push_front(std::move(*it));
        }
    std::erase_if(running_, [](const auto& r) { return !r; });
    // Admission, first come first served: a free slot, and room for the whole remaining prompt and a block.
    while (budget > 0 && !waiting_.empty() && !free_slots_.empty()) {
        Request& r = *waiting_.front();
        if (blocks_for(int64_t(r.tokens.size())) + 1 > free_blocks()) break;
        r.slot = free_slots_.back();
        free_slots_.pop_back();
        r.n_cached = 0;
        match_prefix(r);
        r.plan_n = r.chunk(budget);
        planned_blocks += session_.kv_blocks_to_grow(r.slot, r.plan_n);
        budget -= r.plan_n;
        auto pos = std::upper_bound(running_.begin(), running_.end(), r.order,
                                    [](uint64_t o, const auto& q) { return o < q->order; });
        running_.insert(pos, std::move(waiting_.front()));
        waiting_.pop_front();
    }

    batch_tokens_.clear();
    batch_seqs_.clear();
    batch_want_.clear();
    batch_reqs_.clear();
    batch_row_.clear();
    size_t n_rows = 0;
    for (auto& r : running_) {
        if (r->plan_n == 0) continue;
        batch_reqs_.push_back(r.get());
        batch_row_.push_back(n_rows);
        const bool all = r->wants_prompt_logprobs();
        n_rows += all ? size_t(r->plan_n) : 1;
        for (int i = 0; i < r->plan_n; ++i) {
            batch_tokens_.push_back(r->tokens[size_t(r->n_cached + i)]);
            batch_seqs_.push_back(r->slot);
            batch_want_.push_back(uint8_t(all));
        }
    }
    if (batch_tokens_.empty()) return;
    if (logits_.size() < n_rows * size_t(n_vocab_)) logits_.resize(n_rows * size_t(n_vocab_));
    const auto t0 = std::chrono::steady_clock::now();
    try {
        session_.eval_batch(batch_tokens_, batch_seqs_, logits_.data(), false, batch_want_);
    } catch (const std::length_error&) {
        return;  // the pool ran dry under another user of the Session; nothing was appended: retry
    } catch (const std::exception& e) {
        for (Request* r : batch_reqs_) finish(*r, Finish::Error, e.what());
        std::erase_if(running_, [](const auto& r) { return r->done; });
        return;
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto average = [](double& avg, double x) { avg = avg > 0 ? 0.7 * avg + 0.3 * x : x; };
    if (batch_tokens_.size() >= 32)  // large enough to measure the prompt rate, not the weight reads
        average(seconds_per_token_, dt / double(batch_tokens_.size()));
    if (std::all_of(batch_reqs_.begin(), batch_reqs_.end(), [](const Request* r) { return r->decoding(); }))
        average(decode_step_seconds_, dt);
    ++work_.steps;
    work_.max_batch = std::max<int64_t>(work_.max_batch, int64_t(batch_tokens_.size()));

    for (size_t i = 0; i < batch_reqs_.size(); ++i) {
        Request& r = *batch_reqs_[i];
        const bool all_rows = r.wants_prompt_logprobs();
        const int first = r.n_cached;
        r.n_cached += r.plan_n;
        register_blocks(r);
        if (!(r.plan_n == 1 && r.n_generated > 0)) work_.tokens_prefilled += r.plan_n;
        if (all_rows) prompt_logprobs(r, first, logits_.data() + batch_row_[i] * size_t(n_vocab_));
        if (r.todo() > 0) continue;                         // more prompt to go
        if (r.n_generated == 0 && r.opt.max_tokens == 0) {  // only the prompt's log-probabilities
            finish(r, Finish::Length);
            continue;
        }
        const size_t last_row = batch_row_[i] + (all_rows ? size_t(r.plan_n - 1) : 0);
        const float* row = logits_.data() + last_row * size_t(n_vocab_);
        int32_t token;
        try {
            token = r.sampler.sample(row);
        } catch (const std::exception& e) {
            finish(r, Finish::Error, e.what());
            continue;
        }
        r.sampler.accept(token);
        r.tokens.push_back(token);
        ++r.n_generated;
        ++work_.tokens_decoded;
        TokenEvent ev;
        ev.request = r.id;
        ev.token = token;
        ev.n_prompt = r.n_prompt;
        ev.n_generated = r.n_generated;
        if (r.opt.n_logprobs >= 0) logprobs(row, token, r.opt.n_logprobs, ev);
        if (std::find(r.opt.eog.begin(), r.opt.eog.end(), token) != r.opt.eog.end()) {
            ev.finish = Finish::Stop;
            ev.text = r.matcher.flush();
        } else {
            ev.text = r.matcher.push(pieces_[size_t(token)]);
            if (r.matcher.stopped())
                ev.finish = Finish::Stop;
            else if (r.n_generated >= r.opt.max_tokens || int64_t(r.tokens.size()) >= n_ctx_) {
                ev.finish = Finish::Length;
                ev.text += r.matcher.flush();
            }
        }
        const bool end = ev.finish != Finish::None;
        emit(std::move(ev));
        if (end) {
            release_slot(r);
            r.done = true;
        }
    }
    std::erase_if(running_, [](const auto& r) { return r->done; });
}

}  // namespace qrt
