// The continuous-batching scheduler (engine/scheduler.h) under ASan + UBSan: requests together give the
// tokens each gives alone (greedy and seeded), also when a pool too small for all of them forces
// preemption; cancellation and shutdown with requests in flight return every block; bad requests throw.
//
// Needs the SmolLM2 Q4_1 file of the Python tests: $QRT_TEST_MODEL, else
// ${QRT_TEST_CACHE:-~/.cache/qrt-tests}/SmolLM2-135M-Instruct.Q4_1.gguf; without it the test says
// "skipped" and passes.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "check.h"
#include "engine/scheduler.h"

namespace {

using qrt::Finish;
using qrt::RequestOptions;
using qrt::Scheduler;
using qrt::SchedulerParams;
using qrt::Session;
using qrt::SessionParams;
using qrt::TokenEvent;
using qrt::testing::check;
using qrt::testing::check_throws;

std::string model_path() {
    if (const char* p = std::getenv("QRT_TEST_MODEL")) return p;
    std::string dir;
    if (const char* c = std::getenv("QRT_TEST_CACHE"))
        dir = c;
    else if (const char* h = std::getenv("HOME"))
        dir = std::string(h) + "/.cache/qrt-tests";
    return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

SessionParams params(int n_kv_blocks) {
    SessionParams p;
    p.n_ctx = 64;
    p.n_threads = 2;
    p.n_seq_max = 4;
    p.n_batch = 32;
    p.n_kv_blocks = n_kv_blocks;
    return p;
}

std::vector<std::string> pieces(const Session& s) {
    std::vector<std::string> out(size_t(s.hparams().n_vocab));
    for (size_t i = 0; i < out.size(); ++i) out[i] = std::string(1, char('a' + i % 26));
    return out;
}

RequestOptions request(int i, int max_tokens) {
    RequestOptions o;
    for (int t = 0; t < 6 + 3 * i; ++t) o.prompt.push_back(int32_t(100 + 37 * i + 11 * t));
    o.max_tokens = max_tokens;
    o.sampling.temperature = i % 2 ? 1.0f : 0.0f;  // odd: seeded sampling
    o.sampling.top_k = 0;
    o.sampling.top_p = 1.0f;
    o.sampling.min_p = 0.0f;
    o.sampling.has_seed = true;
    o.sampling.seed = uint32_t(7 + i);
    return o;
}

struct Result {
    std::vector<int32_t> tokens;
    Finish finish = Finish::None;
};

// Runs the requests at once and collects each one's tokens until its last event; other requests' events
// go to `others`.
std::vector<Result> run(Scheduler& s, const std::vector<RequestOptions>& reqs,
                        std::vector<TokenEvent>* others = nullptr) {
    std::map<int64_t, size_t> index;
    for (size_t i = 0; i < reqs.size(); ++i) index[s.submit(reqs[i])] = i;
    std::vector<Result> out(reqs.size());
    size_t done = 0;
    while (done < reqs.size()) {
        std::vector<TokenEvent> evs;
        if (!s.wait_events(evs, 10.0)) break;
        for (const TokenEvent& e : evs) {
            if (!index.count(e.request)) {
                if (others) others->push_back(e);
                continue;
            }
            Result& r = out[index.at(e.request)];
            if (e.token >= 0) r.tokens.push_back(e.token);
            if (e.finish != Finish::None) {
                r.finish = e.finish;
                ++done;
            }
        }
    }
    return out;
}

// Every block is free or only held by the prefix cache (evictable).
bool all_back(const Session& s) {
    return s.n_free_kv_blocks() + s.n_evictable_kv_blocks() == s.n_kv_blocks();
}

}  // namespace

int main() {
    const std::string path = model_path();
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        std::printf("skipped: no model at %s (set QRT_TEST_MODEL)\n", path.c_str());
        return 0;
    }
    std::vector<RequestOptions> reqs;
    for (int i = 0; i < 4; ++i) reqs.push_back(request(i, 10));

    std::vector<Result> alone;
    {
        Session session(path, params(0));
        Scheduler s(session, pieces(session), SchedulerParams{});
        for (const RequestOptions& r : reqs) alone.push_back(run(s, {r})[0]);
        for (const Result& r : alone)
            check(r.tokens.size() == 10 && r.finish == Finish::Length, "alone: 10 tokens, length");
        const std::vector<Result> together = run(s, reqs);
        for (size_t i = 0; i < reqs.size(); ++i)
            check(together[i].tokens == alone[i].tokens, "together = alone, request " + std::to_string(i));
        check(all_back(session), "every block back after finishing");

        // Errors, before anything is queued.
        RequestOptions bad = reqs[0];
        bad.prompt.clear();
        check_throws<std::invalid_argument>([&] { s.submit(bad); }, "empty prompt", "empty");
        bad.prompt.assign(64, 5);
        check_throws<std::invalid_argument>([&] { s.submit(bad); }, "long prompt", "prompt has 64 tokens");
        bad.prompt = {-1};
        check_throws<std::invalid_argument>([&] { s.submit(bad); }, "bad id", "out of range");
        bad = reqs[0];
        bad.max_tokens = -1;
        check_throws<std::invalid_argument>([&] { s.submit(bad); }, "negative max_tokens", "max_tokens");
        bad = reqs[0];
        bad.sampling.top_p = 0;
        check_throws<std::invalid_argument>([&] { s.submit(bad); }, "bad top_p", "top_p");
        bad = reqs[0];
        bad.n_logprobs = 21;
        check_throws<std::invalid_argument>([&] { s.submit(bad); }, "logprobs > 20", "logprobs");
        {
            // logprobs: the greedy token is the most likely, its log-probability the top one's, all <= 0
            RequestOptions lp = reqs[0];
            lp.n_logprobs = 3;
            const int64_t id = s.submit(lp);
            int seen = 0;
            for (bool end = false; !end;) {
                std::vector<TokenEvent> evs;
                s.wait_events(evs, 10.0);
                for (const TokenEvent& e : evs) {
                    if (e.request != id) continue;
                    end |= e.finish != Finish::None;
                    if (e.token < 0) continue;
                    ++seen;
                    check(e.top.size() == 3 && e.top[0].token == e.token && e.top[0].logprob == e.logprob &&
                              e.logprob <= 0 && e.top[1].logprob <= e.top[0].logprob,
                          "logprobs: greedy token first, sorted");
                }
            }
            check(seen == 10, "logprobs: one entry per token");
        }
        bad = reqs[0];
        bad.max_tokens = 0;
        const std::vector<Result> zero = run(s, {bad});
        check(zero[0].tokens.empty() && zero[0].finish == Finish::Length, "max_tokens 0: nothing, length");

        // Cancellation in flight frees the blocks; the others finish unchanged.
        RequestOptions longer = reqs[1];
        longer.max_tokens = 40;
        const int64_t victim = s.submit(longer);
        std::vector<TokenEvent> evs;
        while (evs.empty()) s.wait_events(evs, 10.0);
        s.cancel(victim);
        const std::vector<Result> rest = run(s, {reqs[0], reqs[2]}, &evs);
        check(rest[0].tokens == alone[0].tokens && rest[1].tokens == alone[2].tokens, "others unchanged");
        bool cancelled = false;
        for (int k = 0; k < 100 && !cancelled; ++k) {
            for (const TokenEvent& e : evs) cancelled |= e.request == victim && e.finish == Finish::Cancelled;
            evs.clear();
            s.wait_events(evs, 0.1);
        }
        check(cancelled, "a cancelled request ends with a Cancelled event");
        check(all_back(session), "cancelled: its blocks are back");

        // Shutdown with requests in flight: each ends Cancelled, every block back, submit refused.
        for (const RequestOptions& r : reqs) s.submit(r);
        s.shutdown();
        int ends = 0;
        std::vector<TokenEvent> last;
        while (s.wait_events(last, 0.1)) {
        }
        for (const TokenEvent& e : last) ends += e.finish != Finish::None;
        check(ends == 4, "shutdown: every request ends");
        check(all_back(session), "shutdown: every block back");
        check_throws<std::runtime_error>([&] { s.submit(reqs[0]); }, "submit after shutdown", "shut down");
    }
    {
        // 5 blocks (80 tokens) for four requests of up to 15 + 10 tokens: preemption, same tokens.
        Session session(path, params(5));
        Scheduler s(session, pieces(session), SchedulerParams{});
        const std::vector<Result> small = run(s, reqs);
        for (size_t i = 0; i < reqs.size(); ++i)
            check(small[i].tokens == alone[i].tokens, "small pool = alone, request " + std::to_string(i));
        check(s.stats().preemptions > 0, "the small pool preempted");
        check(all_back(session), "small pool: every block back");
    }
    {
        // Prefix cache: a second request sharing 40 tokens with the first attaches its two full blocks and
        // gives the tokens it gives with no cache.
        RequestOptions a = request(0, 6), b = request(2, 6);
        a.prompt.assign(40, 0);
        for (int t = 0; t < 40; ++t) a.prompt[size_t(t)] = int32_t(200 + 13 * t);
        b.prompt = a.prompt;
        b.prompt.push_back(777);
        b.prompt.push_back(778);
        std::vector<int32_t> cold;
        {
            Session session(path, params(0));
            SchedulerParams p;
            p.prefix_cache = false;
            Scheduler s(session, pieces(session), p);
            cold = run(s, {b})[0].tokens;
            check(s.stats().prefix_hit_tokens == 0, "no cache: no hits");
        }
        Session session(path, params(0));
        Scheduler s(session, pieces(session), SchedulerParams{});
        run(s, {a});
        check(s.stats().kv_cached >= 2, "the first request's full blocks stay cached");
        const std::vector<Result> warm = run(s, {b});
        check(s.stats().prefix_hit_tokens == 32, "the second request reuses two blocks");
        check(warm[0].tokens == cold, "prefix hit: same tokens as without the cache");
        check(all_back(session), "prefix cache: every block free or evictable");
        // A pool of cached blocks is evicted for new work: fill it with unrelated requests.
        std::vector<RequestOptions> many;
        for (int i = 0; i < 4; ++i) many.push_back(request(i, 30));
        const std::vector<Result> again = run(s, many);
        for (const Result& r : again) check(r.tokens.size() == 30, "after eviction: complete");
    }
    return qrt::testing::report();
}
