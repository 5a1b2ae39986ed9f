// parallel_for: split [0, n) into contiguous chunks over up to n_threads threads.
//
// Used for coarse, whole-tensor work (quantizing or dequantizing a tensor). The engine's token loop uses
// its own persistent pool instead: creating threads per call costs tens of microseconds.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace qrt {

inline int default_thread_count() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : int(n);
}

// Calls fn(begin, end) on disjoint ranges covering [0, n). Chunks hold at least min_chunk items so
// small jobs stay on the calling thread. The first exception thrown by any chunk is rethrown.
template <typename Fn>
void parallel_for(int64_t n, int n_threads, int64_t min_chunk, Fn&& fn) {
    if (n <= 0) return;
    if (n_threads <= 0) n_threads = default_thread_count();
    const int64_t max_by_size = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
    const int workers = int(std::min<int64_t>(n_threads, max_by_size));
    if (workers <= 1) {
        fn(int64_t(0), n);
        return;
    }
    std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
    std::vector<std::thread> threads;
    threads.reserve(size_t(workers - 1));
    auto run = [&](int w) {
        const int64_t begin = n * w / workers, end = n * (w + 1) / workers;
        try {
            fn(begin, end);
        } catch (...) {
            errors[size_t(w)] = std::current_exception();
        }
    };
    for (int w = 1; w < workers; ++w) threads.emplace_back(run, w);
    run(0);
    for (auto& t : threads) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace qrt
