// qrt._C.Scheduler: continuous batching over a qrt._C.Model (engine/scheduler.h) for python/qrt.
//
// submit() and cancel() return at once; the scheduler's own thread runs the steps with no GIL. Python
// drains the events with wait_events(), which releases the GIL while it waits.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "bindings/register.h"
#include "engine/scheduler.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace qrt::bindings {

namespace {

using TokenArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

std::vector<int32_t> to_vector(const TokenArray& a) {
    return std::vector<int32_t>(a.data(), a.data() + a.size());
}

// None: empty (a default that builds no numpy array, so that importing qrt._C does not import numpy).
std::vector<int32_t> optional_ids(const py::object& o) {
    if (o.is_none()) return {};
    const TokenArray a = TokenArray::ensure(o);
    if (!a) throw py::type_error("token ids must be a 1-D integer array");
    return to_vector(a);
}

int64_t submit(Scheduler& s, const TokenArray& prompt, int64_t max_tokens, double temperature, int64_t top_k,
               double top_p, double min_p, double repeat_penalty, double frequency_penalty,
               double presence_penalty, int64_t penalty_last_n, const py::object& seed, const py::object& eog,
               const py::object& suppress, std::vector<std::string> stop, int64_t logprobs,
               int64_t prompt_logprobs) {
    if (max_tokens < 0) throw py::value_error("max_tokens must be >= 0, got " + std::to_string(max_tokens));
    RequestOptions o;
    o.prompt = to_vector(prompt);
    o.max_tokens = int(std::min<int64_t>(max_tokens, std::numeric_limits<int>::max()));
    o.sampling = sampling_params(temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                                 presence_penalty, penalty_last_n, seed);
    o.eog = optional_ids(eog);
    o.suppress = optional_ids(suppress);
    o.stop = std::move(stop);
    if (logprobs < -1 || logprobs > 20)
        throw py::value_error("logprobs must be in [0, 20], got " + std::to_string(logprobs));
    o.n_logprobs = int(logprobs);
    if (prompt_logprobs < -1 || prompt_logprobs > 20)
        throw py::value_error("prompt_logprobs must be in [0, 20], got " + std::to_string(prompt_logprobs));
    o.n_prompt_logprobs = int(prompt_logprobs);
    py::gil_scoped_release release;
    return s.submit(std::move(o));
}

// [(request, token, text bytes, finish, n_prompt, n_generated, error, logprob, [(token, logprob)], prompt)],
// or None once shut down and drained.
py::object wait_events(Scheduler& s, double timeout_s) {
    std::vector<TokenEvent> events;
    bool alive;
    {
        py::gil_scoped_release release;
        alive = s.wait_events(events, timeout_s);
    }
    if (!alive) return py::none();
    py::list out(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
        const TokenEvent& e = events[i];
        py::object finish =
            e.finish == Finish::None ? py::object(py::none()) : py::str(finish_name(e.finish));
        py::list top(e.top.size());
        for (size_t j = 0; j < e.top.size(); ++j) top[j] = py::make_tuple(e.top[j].token, e.top[j].logprob);
        out[i] = py::make_tuple(e.request, e.token, py::bytes(e.text), finish, e.n_prompt, e.n_generated,
                                e.error, e.logprob, top, e.prompt);
    }
    return out;
}

py::dict stats(const Scheduler& s) {
    const SchedulerStats st = s.stats();
    py::dict d;
    d["running"] = st.running;
    d["waiting"] = st.waiting;
    d["kv_blocks"] = st.kv_blocks;
    d["kv_free"] = st.kv_free;
    d["steps"] = st.steps;
    d["tokens_decoded"] = st.tokens_decoded;
    d["tokens_prefilled"] = st.tokens_prefilled;
    d["preemptions"] = st.preemptions;
    d["max_batch"] = st.max_batch;
    d["kv_cached"] = st.kv_cached;
    d["prefix_hit_tokens"] = st.prefix_hit_tokens;
    d["prefix_query_tokens"] = st.prefix_query_tokens;
    return d;
}

}  // namespace

void register_scheduler(py::module_& m) {
    py::register_exception<QueueFullError>(m, "QueueFullError", PyExc_RuntimeError);
    py::class_<Scheduler>(m, "Scheduler",
                          "Continuous batching over a Model's sequences [first_seq, first_seq + n_seq),\n"
                          "stepped by a background thread (engine/scheduler.h).")
        .def(py::init([](Session& model, std::vector<std::string> pieces, int first_seq, int n_seq,
                         int prefill_budget, int prefill_budget_idle, int64_t max_waiting, bool prefix_cache,
                         double max_step_slowdown, double max_step_seconds) {
                 SchedulerParams p;
                 p.first_seq = first_seq;
                 p.n_seq = n_seq;
                 p.prefill_budget = prefill_budget;
                 p.prefill_budget_idle = prefill_budget_idle;
                 if (max_waiting < 1) throw py::value_error("max_waiting must be >= 1");
                 p.max_waiting = size_t(max_waiting);
                 p.prefix_cache = prefix_cache;
                 if (!(max_step_slowdown >= 0)) throw py::value_error("max_step_slowdown must be >= 0");
                 if (!(max_step_seconds >= 0)) throw py::value_error("max_step_seconds must be >= 0");
                 p.max_step_slowdown = max_step_slowdown;
                 p.max_step_seconds = max_step_seconds;
                 py::gil_scoped_release release;
                 return std::make_unique<Scheduler>(model, std::move(pieces), p);
             }),
             "model"_a, "pieces"_a, "first_seq"_a = 0, "n_seq"_a = 0, "prefill_budget"_a = 256,
             "prefill_budget_idle"_a = 0, "max_waiting"_a = int64_t(1) << 20, "prefix_cache"_a = true,
             "max_step_slowdown"_a = 1.75, "max_step_seconds"_a = 0.5, py::keep_alive<1, 2>(),
             "pieces: each token's bytes (n_vocab of them). Starts the stepping thread.")
        .def("submit", &submit, "prompt"_a, "max_tokens"_a, "temperature"_a = 0.8, "top_k"_a = 40,
             "top_p"_a = 0.95, "min_p"_a = 0.05, "repeat_penalty"_a = 1.0, "frequency_penalty"_a = 0.0,
             "presence_penalty"_a = 0.0, "penalty_last_n"_a = 64, "seed"_a = py::none(), "eog"_a = py::none(),
             "suppress"_a = py::none(), "stop"_a = std::vector<std::string>{}, "logprobs"_a = -1,
             "prompt_logprobs"_a = -1,
             "Queues a request; returns its id. ValueError for bad arguments or a prompt that does not fit,\n"
             "QueueFullError when too many requests wait.")
        .def("cancel", &Scheduler::cancel, "request"_a, py::call_guard<py::gil_scoped_release>(),
             "Ends a request (a last 'cancelled' event); its KV blocks are freed within a step.")
        .def("wait_events", &wait_events, "timeout"_a,
             "Waits up to `timeout` seconds for events and returns them all: (request, token, text bytes,\n"
             "finish (None, 'stop', 'length', 'cancelled', 'error'), n_prompt, n_generated, error, logprob,\n"
             "top [(token, logprob)], prompt); None once shut down and drained.")
        .def("shutdown", &Scheduler::shutdown, py::call_guard<py::gil_scoped_release>(),
             "Cancels every request and stops the thread.")
        .def_property_readonly(
            "stats", &stats,
            "running, waiting, kv_blocks, kv_free, steps, tokens_decoded, tokens_prefilled,\n"
            "preemptions, max_batch.");
}

}  // namespace qrt::bindings
