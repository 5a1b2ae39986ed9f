// The layer split, weight upload and hand-off (model/offload.h) on the cpu-test device, under ASan + UBSan:
// every split gives the all-CPU logits bit for bit, decode through a split equals prefill, "auto" fits
// the budget, and a part that does not fit is a DeviceAllocationError with nothing half-built.
//
// Needs the SmolLM2 Q4_1 file of the Python tests: $QRT_TEST_MODEL, else
// ${QRT_TEST_CACHE:-~/.cache/qrt-tests}/SmolLM2-135M-Instruct.Q4_1.gguf; without it the test says
// "skipped" and passes.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "engine/session.h"

namespace {

using qrt::Session;
using qrt::SessionParams;
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

SessionParams params(int gpu_layers, uint64_t free_bytes = 0) {
    SessionParams p;
    p.n_ctx = 48;
    p.n_threads = 2;
    p.n_seq_max = 2;
    p.n_batch = 32;
    p.gpu_layers = gpu_layers;
    p.device = gpu_layers != 0 ? "cpu-test" : "";
    p.device_free_bytes = free_bytes;
    return p;
}

// Logits of every token of `ids` in sequence 0, as one prefill (chunk 0) or in chunks of `chunk` tokens.
std::vector<float> run(Session& s, const std::vector<int32_t>& ids, int chunk) {
    const size_t n_vocab = size_t(s.hparams().n_vocab);
    std::vector<float> out(ids.size() * n_vocab);
    s.clear(0);
    if (chunk == 0) chunk = int(ids.size());
    for (size_t b = 0; b < ids.size(); b += size_t(chunk)) {
        const size_t n = std::min(ids.size() - b, size_t(chunk));
        s.eval(std::span(ids.data() + b, n), {}, 0, out.data() + b * n_vocab, true);
    }
    s.clear(0);
    return out;
}

}  // namespace

int main() {
    const std::string path = model_path();
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        std::printf("skipped: no model at %s (set QRT_TEST_MODEL)\n", path.c_str());
        return 0;
    }
    const std::vector<int32_t> ids = {1,  504, 3575, 282, 4649, 314, 253, 1345, 28,
                                      17, 30,  2010, 5,   9,    11,  13,  18,   19};
    Session cpu(path, params(0));
    const int64_t n_layer = cpu.hparams().n_layer;
    check(cpu.device() == nullptr, "gpu_layers 0: no device part");
    const std::vector<float> ref = run(cpu, ids, 0);

    for (int64_t n : {int64_t(1), n_layer / 2, n_layer, n_layer + 1, int64_t(-1)}) {
        Session s(path, params(int(n)));
        const std::string what = "gpu_layers " + std::to_string(n);
        const qrt::model::DevicePart* d = s.device();
        check(d && d->owns_its_weights(), what + ": the part holds its own copy of its weights");
        const int64_t on_device = n < 0 || n > n_layer ? n_layer : n;
        check(d && d->placement().first == n_layer - on_device, what + ": the last layers on the device");
        check(d && d->placement().head == (n < 0 || n > n_layer), what + ": the head past n_layer");
        check(s.kv_bytes() == cpu.kv_bytes() / uint64_t(n_layer) * uint64_t(n_layer - on_device),
              what + ": the host keeps only its layers' K/V");
        check(run(s, ids, 0) == ref, what + ": prefill logits equal the CPU's bit for bit");
        if (n == n_layer / 2 || n == -1) {
            check(run(s, ids, 1) == ref, what + ": decode equals prefill");
            check(run(s, ids, 7) == ref, what + ": chunks of 7 equal prefill");
        }
    }

    // "auto" under fake budgets: the largest N that fits with the margin
    std::vector<uint64_t> need(size_t(n_layer + 2), 0);
    for (int64_t n : {int64_t(1), int64_t(2), n_layer + 1})
        need[size_t(n)] = Session(path, params(int(n))).device()->memory().total();
    for (int64_t n : {int64_t(1), int64_t(2), n_layer + 1}) {
        const uint64_t budget = qrt::model::kDeviceMarginBytes + need[size_t(n)];
        Session fits(path, params(-2, budget));
        check(fits.device() && fits.device()->placement().n_device() + fits.device()->placement().head == n,
              "auto with room for exactly " + std::to_string(n));
        Session short_by_one(path, params(-2, budget - 1));
        const int64_t got = short_by_one.device() ? short_by_one.device()->placement().n_device() +
                                                        short_by_one.device()->placement().head
                                                  : 0;
        check(got == n - 1, "auto one byte short of " + std::to_string(n));
    }
    check_throws<qrt::model::DeviceAllocationError>([&] { Session s(path, params(-1, need[1])); },
                                                    "all layers in room for one", "bytes are free");
    check_throws<std::invalid_argument>([&] { Session s(path, params(-3)); }, "gpu_layers -3", "gpu_layers");
    SessionParams no_device = params(4);
    no_device.device = "";
    check_throws<std::invalid_argument>([&] { Session s(path, no_device); }, "layers without a backend",
                                        "backend");
    SessionParams unknown = params(4);
    unknown.device = "tpu";
    check_throws<std::invalid_argument>([&] { Session s(path, unknown); }, "unknown backend", "unknown");
    return qrt::testing::report();
}
