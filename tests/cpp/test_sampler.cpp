// The sampler steps and StopMatcher against hand-computed cases and brute-force references (run it under
// ASan + UBSan). Prints "N passed, M failed"; exits non-zero on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "sample/sampler.h"
#include "sample/stop.h"

namespace {

using qrt::Candidates;
using qrt::Sampler;
using qrt::SamplingParams;
using qrt::StopMatcher;
using qrt::TokenLogit;

using qrt::testing::check;

using qrt::testing::check_throws;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Params with every filter off: the candidates are the penalized logits / temperature.
SamplingParams plain() {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

std::vector<int32_t> ids(const Candidates& c) {
    std::vector<int32_t> out;
    for (const TokenLogit& t : c) out.push_back(t.id);
    return out;
}

// A Candidates view over a local copy of logits, in vocabulary order.
struct Arr {
    std::vector<TokenLogit> buf;
    Candidates c;
    explicit Arr(const std::vector<float>& logits) : buf(logits.size()) {
        c = Sampler::load(logits.data(), int32_t(logits.size()), buf.data());
    }
};

std::vector<float> random_logits(size_t n, uint32_t seed, float scale = 3.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

// ---- validation ----

void test_validation() {
    const auto bad = [](const std::function<void(SamplingParams&)>& set, const std::string& needle) {
        SamplingParams p;
        set(p);
        check_throws<std::invalid_argument>([&] { p.validate(); }, "validate " + needle, needle);
        check_throws<std::invalid_argument>([&] { Sampler s(p, 10); }, "Sampler(" + needle + ")", needle);
    };
    const float nan = std::numeric_limits<float>::quiet_NaN();
    bad([](SamplingParams& p) { p.temperature = -0.1f; }, "temperature");
    bad([&](SamplingParams& p) { p.temperature = nan; }, "temperature");
    bad([](SamplingParams& p) { p.temperature = kInf; }, "temperature");
    bad([](SamplingParams& p) { p.top_k = -1; }, "top_k");
    bad([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
    bad([](SamplingParams& p) { p.top_p = 1.0001f; }, "top_p");
    bad([&](SamplingParams& p) { p.top_p = nan; }, "top_p");
    bad([](SamplingParams& p) { p.min_p = -0.01f; }, "min_p");
    bad([](SamplingParams& p) { p.min_p = 1.5f; }, "min_p");
    bad([&](SamplingParams& p) { p.min_p = nan; }, "min_p");
    bad([](SamplingParams& p) { p.repeat_penalty = 0.0f; }, "repeat_penalty");
    bad([&](SamplingParams& p) { p.frequency_penalty = nan; }, "frequency_penalty");
    bad([](SamplingParams& p) { p.presence_penalty = -kInf; }, "presence_penalty");
    bad([](SamplingParams& p) { p.penalty_last_n = -1; }, "penalty_last_n");
    bad([](SamplingParams& p) { p.penalty_last_n = SamplingParams::kMaxPenaltyLastN + 1; }, "penalty_last_n");

    // edges that are valid
    SamplingParams ok;
    ok.temperature = 0.0f;
    ok.top_p = 1.0f;
    ok.min_p = 1.0f;
    ok.top_k = 0;
    ok.frequency_penalty = -2.0f;
    bool threw = false;
    try {
        ok.validate();
    } catch (...) {
        threw = true;
    }
    check(!threw, "edge values are valid");
    check_throws<std::invalid_argument>([] { Sampler s(SamplingParams{}, 0); }, "n_vocab 0", "n_vocab");
}

// ---- the steps ----

void test_greedy() {
    const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
    SamplingParams p;
    p.temperature = 0.0f;
    Sampler s(p, 5);
    check(s.sample(logits.data()) == 1, "greedy picks the argmax, lowest id on ties");
    check(ids(s.candidates(logits.data())) == std::vector<int32_t>{1}, "greedy candidates = argmax alone");

    const auto big = random_logits(49152, 7);
    Sampler g(p, 49152);
    const int32_t want = int32_t(std::max_element(big.begin(), big.end()) - big.begin());
    for (int i = 0; i < 3; ++i) check(g.sample(big.data()) == want, "greedy = argmax on 49152 logits");

    std::vector<float> masked(5, -kInf);
    masked[3] = -100.0f;
    check(s.sample(masked.data()) == 3, "greedy with -inf elsewhere");
}

void test_top_k() {
    const auto logits = random_logits(5000, 1);
    for (int32_t k : {1, 2, 40, 128, 129, 1000, 4999, 5000, 6000}) {
        Arr a(logits);
        Sampler::top_k(a.c, k);
        const size_t want_n = std::min<size_t>(size_t(k), logits.size());
        check(a.c.size == want_n && a.c.sorted, "top_k keeps exactly k: k=" + std::to_string(k));
        std::vector<float> sorted = logits;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        bool same = true;
        for (size_t i = 0; i < a.c.size; ++i) same &= a.c.data[i].logit == sorted[i];
        for (size_t i = 0; i < a.c.size; ++i) same &= logits[size_t(a.c.data[i].id)] == a.c.data[i].logit;
        check(same, "top_k keeps the k largest, in order: k=" + std::to_string(k));
    }
    Arr a(logits);
    Sampler::top_k(a.c, 0);
    check(a.c.size == logits.size() && !a.c.sorted, "top_k 0 is a no-op");

    Arr ties(std::vector<float>{1.0f, 2.0f, 2.0f, 2.0f, 0.0f});
    Sampler::top_k(ties.c, 2);
    check(ids(ties.c) == std::vector<int32_t>{1, 2}, "top_k ties: lower ids first");
}

void test_top_p() {
    // probabilities 0.5, 0.3, 0.15, 0.05 at ids 2, 0, 3, 1
    const std::vector<float> logits = {std::log(0.3f), std::log(0.05f), std::log(0.5f), std::log(0.15f)};
    const auto kept = [&](float p) {
        Arr a(logits);
        Sampler::top_p(a.c, p);
        return ids(a.c);
    };
    check(kept(0.4f) == std::vector<int32_t>{2}, "top_p 0.4 keeps 1");
    check(kept(0.75f) == std::vector<int32_t>{2, 0}, "top_p 0.75 keeps 2");
    check(kept(0.9f) == std::vector<int32_t>{2, 0, 3}, "top_p 0.9 keeps 3");
    check(kept(0.99f) == std::vector<int32_t>{2, 0, 3, 1}, "top_p 0.99 keeps 4");
    check(kept(1.0f) == std::vector<int32_t>{0, 1, 2, 3}, "top_p 1 is a no-op (order kept)");

    // large arrays (adaptive partial sort) vs a brute force: full sort; the kept prefix is the sorted order
    // and, in double precision, holds mass >= p while one token fewer holds < p (up to float summation error)
    for (float scale : {0.05f, 0.5f, 3.0f}) {
        const auto big = random_logits(20000, 11, scale);
        std::vector<int32_t> order(big.size());
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
            return big[size_t(a)] > big[size_t(b)] || (big[size_t(a)] == big[size_t(b)] && a < b);
        });
        const double top = big[size_t(order[0])];
        double sum = 0;
        for (float x : big) sum += std::exp(double(x) - top);
        for (float p : {0.1f, 0.5f, 0.9f, 0.95f, 0.999f}) {
            Arr a(big);
            Sampler::top_p(a.c, p);
            bool prefix = a.c.sorted && a.c.size > 0;
            for (size_t i = 0; i < a.c.size && prefix; ++i) prefix = a.c.data[i].id == order[i];
            double mass = 0, last = 0;
            for (size_t i = 0; i < a.c.size; ++i)
                mass += last = std::exp(double(a.c.data[i].logit) - top) / sum;
            const bool smallest = mass >= p - 1e-4 && mass - last < p + 1e-4;
            check(prefix && smallest, "top_p large: scale " + std::to_string(scale) + " p " +
                                          std::to_string(p) + " kept " + std::to_string(a.c.size) + " mass " +
                                          std::to_string(mass));
        }
    }
}

void test_min_p() {
    // max logit 2: threshold 2 + log(0.1) = -0.3026
    const std::vector<float> logits = {-0.3f, 2.0f, -0.31f, 1.0f, -5.0f};
    Arr a(logits);
    Sampler::min_p(a.c, 0.1f);
    check(ids(a.c) == std::vector<int32_t>{0, 1, 3} && !a.c.sorted, "min_p unsorted keeps order");
    Arr b(logits);
    Sampler::top_k(b.c, 5);
    Sampler::min_p(b.c, 0.1f);
    check(ids(b.c) == std::vector<int32_t>{1, 3, 0}, "min_p sorted keeps the prefix");
    Arr z(logits);
    Sampler::min_p(z.c, 0.0f);
    check(z.c.size == 5, "min_p 0 is a no-op");
    Arr one(logits);
    Sampler::min_p(one.c, 1.0f);
    check(ids(one.c) == std::vector<int32_t>{1}, "min_p 1 keeps the max only");
}

void test_temperature() {
    Arr a(std::vector<float>{1.0f, -2.0f, 0.5f});
    Sampler::temperature(a.c, 0.5f);
    check(a.c.data[0].logit == 2.0f && a.c.data[1].logit == -4.0f && a.c.data[2].logit == 1.0f,
          "temperature divides");
    Arr b(std::vector<float>{1.0f, 4.0f, 4.0f});
    Sampler::temperature(b.c, 0.0f);
    check(ids(b.c) == std::vector<int32_t>{1}, "temperature 0 keeps the argmax");
}

// temperature last: top_p sees the raw logits. Probabilities 0.6, 0.3, 0.1 raw; top_p 0.85 keeps 2 raw.
// With T = 3 applied first the distribution flattens (0.43, 0.34, 0.23) and 0.85 would need all 3.
void test_order() {
    SamplingParams p = plain();
    p.top_p = 0.85f;
    p.temperature = 3.0f;
    Sampler s(p, 3);
    const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
    const Candidates c = s.candidates(logits.data());
    check(ids(c) == std::vector<int32_t>{0, 1}, "top_p before temperature");
    check(std::fabs(c.data[0].logit - std::log(0.6f) / 3.0f) < 1e-7f, "temperature applied to the survivors");
}

void test_penalties() {
    SamplingParams p = plain();
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = 4;
    Sampler s(p, 6);
    const std::vector<float> logits = {3.0f, -1.0f, 0.0f, 2.0f, 1.0f, 5.0f};
    // history 5 5 0 1 1 3: the last 4 are 0 1 1 3 (the 5s fell out of the window)
    for (int32_t t : {5, 5, 0, 1, 1, 3}) s.accept(t);
    check(s.history_size() == 4, "ring holds penalty_last_n tokens");
    const Candidates c = s.candidates(logits.data());
    std::vector<float> got(6);
    for (const TokenLogit& t : c) got[size_t(t.id)] = t.logit;
    // 0: 3/2 - (1*0.5 + 0.25) = 0.75; 1: -1*2 - (2*0.5 + 0.25) = -3.25; 3: 2/2 - 0.75 = 0.25
    const std::vector<float> want = {0.75f, -3.25f, 0.0f, 0.25f, 1.0f, 5.0f};
    check(got == want, "penalties: hand-computed example");

    s.reset();
    const Candidates r = s.candidates(logits.data());
    bool untouched = true;
    for (const TokenLogit& t : r) untouched &= t.logit == logits[size_t(t.id)];
    check(untouched && s.history_size() == 0, "reset forgets the history");

    const std::vector<int32_t> bad = {1, 6};
    check_throws<std::invalid_argument>([&] { s.accept(std::span<const int32_t>(bad)); },
                                        "accept out of range", "outside");
    check(s.history_size() == 0, "accept(span) is all or nothing");
    check_throws<std::invalid_argument>([&] { s.accept(-1); }, "accept -1", "outside");
}

void test_errors() {
    Sampler s(SamplingParams{}, 4);
    std::vector<float> x = {0.0f, 1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
    check_throws<std::runtime_error>([&] { s.sample(x.data()); }, "NaN logits", "NaN");
    x[2] = kInf;
    check_throws<std::runtime_error>([&] { s.sample(x.data()); }, "+inf logits", "+inf");
    std::vector<float> all_masked(4, -kInf);
    check_throws<std::runtime_error>([&] { s.sample(all_masked.data()); }, "all -inf", "-inf");
    SamplingParams g;
    g.temperature = 0;
    Sampler gs(g, 4);
    check_throws<std::runtime_error>([&] { gs.sample(all_masked.data()); }, "greedy all -inf", "-inf");

    Sampler sup(plain(), 4);
    const std::vector<int32_t> banned = {3, 1};
    sup.set_suppressed(banned);
    const std::vector<float> y = {0.0f, 9.0f, 1.0f, 10.0f};
    for (int i = 0; i < 50; ++i) {
        const int32_t t = sup.sample(y.data());
        check(t == 0 || t == 2, "suppressed tokens are never sampled");
    }
    const std::vector<int32_t> oob = {4};
    check_throws<std::invalid_argument>([&] { sup.set_suppressed(oob); }, "suppress out of range", "outside");
}

void test_seed() {
    const auto logits = random_logits(49152, 3, 2.0f);
    SamplingParams p;
    p.top_k = 0;  // a wide candidate set so that draws differ
    p.min_p = 0.0f;
    p.has_seed = true;
    p.seed = 1234;
    Sampler a(p, 49152), b(p, 49152);
    std::vector<int32_t> sa, sb;
    for (int i = 0; i < 64; ++i) {
        sa.push_back(a.sample(logits.data()));
        sb.push_back(b.sample(logits.data()));
    }
    check(sa == sb, "same seed, same tokens");
    a.reset();
    std::vector<int32_t> again;
    for (int i = 0; i < 64; ++i) again.push_back(a.sample(logits.data()));
    check(again == sa, "reset restarts the seeded stream");
    p.seed = 1235;
    Sampler c(p, 49152);
    std::vector<int32_t> sc;
    for (int i = 0; i < 64; ++i) sc.push_back(c.sample(logits.data()));
    check(sc != sa, "a different seed gives different tokens");
    check(a.seed() == 1234, "seed() reports the seed");
}

// The draw follows softmax(logits / T) over the survivors: 200k draws vs expectation (chi-square).
void test_distribution() {
    SamplingParams p = plain();
    p.temperature = 0.7f;
    p.has_seed = true;
    p.seed = 42;
    const std::vector<float> logits = {1.0f, 0.5f, -0.5f, 0.0f, 1.5f, -2.0f};
    Sampler s(p, int32_t(logits.size()));
    std::vector<double> prob(logits.size());
    double z = 0;
    for (size_t i = 0; i < logits.size(); ++i) z += prob[i] = std::exp(double(logits[i]) / 0.7);
    std::vector<int> count(logits.size());
    const int n = 200000;
    for (int i = 0; i < n; ++i) ++count[size_t(s.sample(logits.data()))];
    double chi2 = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        const double e = n * prob[i] / z;
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    check(chi2 < 20.5, "chi-square " + std::to_string(chi2) + " < 20.5 (5 dof, p = 0.001)");
}

// ---- StopMatcher ----

std::string feed(StopMatcher& m, const std::vector<std::string>& pieces) {
    std::string out;
    for (const std::string& p : pieces) out += m.push(p);
    if (!m.stopped()) out += m.flush();
    return out;
}

void test_stop() {
    {
        StopMatcher m({"###"});
        check(m.push("Hello #") == "Hello ", "holds a possible start");
        check(m.push("#") == "", "still held");
        check(m.held() == "##", "held bytes");
        check(m.push("# tail") == "" && m.stopped() && m.stop_index() == 0, "stop across three pieces");
        check(m.push("more") == "" && m.flush() == "", "nothing after a stop");
    }
    {
        StopMatcher m({"###"});
        check(feed(m, {"a #", "# b", " c"}) == "a ## b c" && !m.stopped(), "false start released");
    }
    {  // é = C3 A9, split between tokens; the stop is "é!"
        StopMatcher m({"\xC3\xA9!"});
        check(feed(m, {"caf", "\xC3", "\xA9", "!", "x"}) == "caf", "stop inside a multi-byte char");
        StopMatcher n({"\xC3\xA9!"});
        check(feed(n, {"caf", "\xC3", "\xA9", "?"}) == "caf\xC3\xA9?", "multi-byte char without the stop");
    }
    {  // overlapping prefixes: "aab" in "aaab"
        StopMatcher m({"aab"});
        check(feed(m, {"a", "a", "a", "b", "c"}) == "a", "overlapping prefix");
    }
    {  // several stops: the earliest in the text wins; at one position, the first listed
        StopMatcher m({"END", "ND!", "x"});
        check(feed(m, {"abcE", "ND!"}) == "abc" && m.stop_index() == 0, "earliest position wins");
        StopMatcher n({"abc", "ab"});
        check(feed(n, {"zab", "c"}) == "z" && n.stop_index() == 1, "shorter stop at the same place");
        StopMatcher o({"bc", "abcd"});
        check(feed(o, {"abc"}) == "a" && o.stop_index() == 0, "inner stop found before the longer one");
    }
    {
        StopMatcher m({"\n\n"});
        check(feed(m, {"line\n", "\n", "next"}) == "line", "newline stop");
        m.reset();
        check(!m.stopped() && feed(m, {"x\n", "y"}) == "x\ny", "reset");
    }
    {
        StopMatcher m({});
        check(feed(m, {"any", "thing"}) == "anything", "no stops: passthrough");
        check(m.push("z") == "z", "no stops: nothing held");
    }
    {
        StopMatcher m({"stop"});
        check(feed(m, {"xstop"}) == "x", "stop inside one piece");
        StopMatcher n({"stop"});
        check(feed(n, {"st", "", "o", "p"}) == "", "stop at the very start, empty piece");
    }
    check_throws<std::invalid_argument>([] { StopMatcher m({"ok", ""}); }, "empty stop string", "empty");

    // brute force: random pieces over a small alphabet; output == text cut before the first stop
    std::mt19937 g(5);
    const std::vector<std::string> stops = {"aba", "bb", "cab"};
    for (int trial = 0; trial < 2000; ++trial) {
        std::string text;
        const int len = int(g() % 20);
        for (int i = 0; i < len; ++i) text += "abc"[g() % 3];
        std::vector<std::string> pieces;
        for (size_t i = 0; i < text.size();) {
            const size_t n = std::min<size_t>(g() % 4, text.size() - i);
            pieces.push_back(text.substr(i, n));
            i += n;
        }
        size_t cut = std::string::npos;
        for (const std::string& s : stops) cut = std::min(cut, text.find(s));
        StopMatcher m(stops);
        const std::string got = feed(m, pieces);
        const std::string want = text.substr(0, cut);
        if (got != want || m.stopped() != (cut != std::string::npos)) {
            check(false, "brute force: text '" + text + "' got '" + got + "' want '" + want + "'");
            return;
        }
    }
    check(true, "brute force over 2000 random streams");
}

}  // namespace

int main() {
    test_validation();
    test_greedy();
    test_top_k();
    test_top_p();
    test_min_p();
    test_temperature();
    test_order();
    test_penalties();
    test_errors();
    test_seed();
    test_distribution();
    test_stop();
    return qrt::testing::report();
}
