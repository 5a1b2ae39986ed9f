// qrt._C.Sampler / StopMatcher: the sampler (csrc/sample) for python/qrt and the tests.
//
// Argument errors raise ValueError (std::invalid_argument); NaN or +inf logits raise RuntimeError.
// sample() and candidates() release the GIL; a mutex per Sampler serializes calls from several threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "sample/sampler.h"
#include "sample/stop.h"

namespace py = pybind11;

namespace qrt::bindings {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using TokenArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

struct PySampler {
    Sampler sampler;
    std::mutex mu;
};

uint32_t seed_from(const py::handle& seed) {
    if (py::isinstance<py::bool_>(seed) || !py::isinstance<py::int_>(seed))
        throw py::type_error("seed must be an int or None, got " +
                             std::string(py::str(py::type::handle_of(seed))));
    const py::int_ v = py::reinterpret_borrow<py::int_>(seed);
    if (v < py::int_(0) || v > py::int_(std::numeric_limits<uint32_t>::max()))
        throw py::value_error("seed must be in [0, 4294967295], got " + std::string(py::str(seed)));
    return v.cast<uint32_t>();
}

std::unique_ptr<PySampler> make_sampler(int64_t n_vocab, double temperature, int64_t top_k, double top_p,
                                        double min_p, double repeat_penalty, double frequency_penalty,
                                        double presence_penalty, int64_t penalty_last_n,
                                        const py::object& seed) {
    const SamplingParams p = sampling_params(temperature, top_k, top_p, min_p, repeat_penalty,
                                             frequency_penalty, presence_penalty, penalty_last_n, seed);
    if (n_vocab <= 0 || n_vocab > std::numeric_limits<int32_t>::max())
        throw py::value_error("n_vocab must be in [1, 2147483647], got " + std::to_string(n_vocab));
    return std::unique_ptr<PySampler>(new PySampler{Sampler(p, int32_t(n_vocab)), {}});
}

const float* logits_of(const PySampler& s, const FloatArray& logits) {
    if (logits.ndim() != 1 || logits.shape(0) != s.sampler.n_vocab()) {
        std::string shape;
        for (py::ssize_t i = 0; i < logits.ndim(); ++i)
            shape += (i ? ", " : "") + std::to_string(logits.shape(i));
        throw py::value_error("logits must have shape (" + std::to_string(s.sampler.n_vocab()) + ",), got (" +
                              shape + ")");
    }
    return logits.data();
}

std::vector<int32_t> tokens_of(const TokenArray& tokens) {
    if (tokens.ndim() != 1) throw py::value_error("tokens must be a 1-D sequence of token ids");
    return std::vector<int32_t>(tokens.data(), tokens.data() + tokens.size());
}

const char* kSamplerDoc = R"(Token sampler with llama.cpp's chain, order and defaults.

Per call: suppressed tokens -> repetition/frequency/presence penalties (over the last penalty_last_n
accepted tokens, prompt included) -> top_k -> top_p -> min_p -> temperature -> one random draw.
Temperature comes last, so top-p and min-p see the raw (penalized) logits. temperature == 0 is greedy
(the argmax, lowest id on ties). The same seed, inputs, configuration and build give the same tokens;
seed=None draws a random seed (see .seed).

Off values: top_k=0, top_p=1, min_p=0, repeat_penalty=1, frequency_penalty=0, presence_penalty=0,
penalty_last_n=0. Out-of-range values raise ValueError (nothing is clamped).)";

}  // namespace

SamplingParams sampling_params(double temperature, int64_t top_k, double top_p, double min_p,
                               double repeat_penalty, double frequency_penalty, double presence_penalty,
                               int64_t penalty_last_n, const py::object& seed) {
    SamplingParams::validate(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                             presence_penalty, penalty_last_n);
    SamplingParams p;
    p.temperature = float(temperature);
    p.top_k = int32_t(std::min<int64_t>(top_k, std::numeric_limits<int32_t>::max()));  // > n_vocab: all
    p.top_p = float(top_p);
    p.min_p = float(min_p);
    p.repeat_penalty = float(repeat_penalty);
    p.frequency_penalty = float(frequency_penalty);
    p.presence_penalty = float(presence_penalty);
    p.penalty_last_n = int32_t(penalty_last_n);
    p.has_seed = !seed.is_none();
    if (p.has_seed) p.seed = seed_from(seed);
    return p;
}

void register_sample(py::module_& m) {
    py::class_<PySampler>(m, "Sampler", kSamplerDoc)
        .def(py::init(&make_sampler), py::arg("n_vocab"), py::kw_only(), py::arg("temperature") = 0.8,
             py::arg("top_k") = 40, py::arg("top_p") = 0.95, py::arg("min_p") = 0.05,
             py::arg("repeat_penalty") = 1.0, py::arg("frequency_penalty") = 0.0,
             py::arg("presence_penalty") = 0.0, py::arg("penalty_last_n") = 64, py::arg("seed") = py::none())
        .def(
            "sample",
            [](PySampler& s, const FloatArray& logits) {
                const float* x = logits_of(s, logits);
                py::gil_scoped_release release;
                std::lock_guard<std::mutex> lock(s.mu);
                return s.sampler.sample(x);
            },
            py::arg("logits"),
            "Chooses a token from logits (float32, shape (n_vocab,)). Does not accept it. RuntimeError on "
            "NaN/+inf logits.")
        .def(
            "candidates",
            [](PySampler& s, const FloatArray& logits) {
                const float* x = logits_of(s, logits);
                std::vector<int32_t> ids;
                std::vector<float> values;
                {
                    py::gil_scoped_release release;
                    std::lock_guard<std::mutex> lock(s.mu);
                    const Candidates c = s.sampler.candidates(x);
                    ids.reserve(c.size);
                    values.reserve(c.size);
                    for (const TokenLogit& t : c) {
                        ids.push_back(t.id);
                        values.push_back(t.logit);
                    }
                }
                return py::make_tuple(py::array_t<int32_t>(py::ssize_t(ids.size()), ids.data()),
                                      py::array_t<float>(py::ssize_t(values.size()), values.data()));
            },
            py::arg("logits"),
            "The chain without the draw: (ids int32, logits float32 after temperature) of the tokens the "
            "draw "
            "chooses from, in the order it walks them. Touches neither the RNG nor the history.")
        .def(
            "accept",
            [](PySampler& s, int64_t token) {
                if (token < 0 || token >= s.sampler.n_vocab())
                    throw py::value_error("token id " + std::to_string(token) + " is outside [0, " +
                                          std::to_string(s.sampler.n_vocab()) + ")");
                std::lock_guard<std::mutex> lock(s.mu);
                s.sampler.accept(int32_t(token));
            },
            py::arg("token"), "Records a token (prompt or generated) for the penalties.")
        .def(
            "accept_many",
            [](PySampler& s, const TokenArray& tokens) {
                const std::vector<int32_t> t = tokens_of(tokens);
                std::lock_guard<std::mutex> lock(s.mu);
                s.sampler.accept(t);
            },
            py::arg("tokens"), "accept() for each token in order (all or none are recorded).")
        .def(
            "set_suppressed",
            [](PySampler& s, const TokenArray& tokens) {
                const std::vector<int32_t> t = tokens_of(tokens);
                std::lock_guard<std::mutex> lock(s.mu);
                s.sampler.set_suppressed(t);
            },
            py::arg("tokens"),
            "Tokens never sampled (logit -inf before the chain), e.g. end-of-generation ids for ignore_eos. "
            "Replaces the previous set.")
        .def(
            "reset",
            [](PySampler& s) {
                std::lock_guard<std::mutex> lock(s.mu);
                s.sampler.reset();
            },
            "Forgets accepted tokens and re-seeds the RNG (a new random seed when seed=None).")
        .def_property_readonly("n_vocab", [](const PySampler& s) { return s.sampler.n_vocab(); })
        .def_property_readonly(
            "seed", [](const PySampler& s) { return s.sampler.seed(); },
            "The seed in use (the drawn one when seed=None).")
        .def_property_readonly("history_size", [](const PySampler& s) { return s.sampler.history_size(); })
        .def_property_readonly("params", [](const PySampler& s) {
            const SamplingParams& p = s.sampler.params();
            py::dict d;
            d["temperature"] = p.temperature;
            d["top_k"] = p.top_k;
            d["top_p"] = p.top_p;
            d["min_p"] = p.min_p;
            d["repeat_penalty"] = p.repeat_penalty;
            d["frequency_penalty"] = p.frequency_penalty;
            d["presence_penalty"] = p.presence_penalty;
            d["penalty_last_n"] = p.penalty_last_n;
            d["seed"] = p.has_seed ? py::object(py::int_(p.seed)) : py::object(py::none());
            return d;
        });

    py::class_<StopMatcher>(m, "StopMatcher", R"(Stop strings over a stream of detokenized bytes.

push(piece) returns the bytes safe to emit now, holding back a tail that may begin a stop string (stops
split across tokens or inside a multi-byte character are found). On a match it returns the text before
the stop string and .stopped becomes True; flush() returns the held tail when generation ends otherwise.)")
        .def(py::init<std::vector<std::string>>(), py::arg("stops"),
             "stops: str (matched as UTF-8) or bytes; empty strings raise ValueError.")
        .def(
            "push", [](StopMatcher& s, std::string_view piece) { return py::bytes(s.push(piece)); },
            py::arg("piece"))
        .def("flush", [](StopMatcher& s) { return py::bytes(s.flush()); })
        .def("reset", &StopMatcher::reset)
        .def_property_readonly("stopped", &StopMatcher::stopped)
        .def_property_readonly("stop_index",
                               [](const StopMatcher& s) {
                                   return s.stopped() ? py::object(py::int_(s.stop_index()))
                                                      : py::object(py::none());
                               })
        .def_property_readonly("held", [](const StopMatcher& s) { return py::bytes(s.held()); })
        .def_property_readonly("stops", [](const StopMatcher& s) {
            py::list out;
            for (const std::string& x : s.stops()) out.append(py::bytes(x));
            return out;
        });
}

}  // namespace qrt::bindings
