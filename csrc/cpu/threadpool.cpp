#include "cpu/threadpool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace qrt {

namespace {

// A waiting thread pauses this many times, then yields its core on every further check (cheap when
// nobody else wants the core, and a must when the machine is oversubscribed)...
constexpr int kSpinsBeforeYield = 256;
// ... and a worker sleeps after this many checks without a new job (about a millisecond).
constexpr int kSpinsBeforeSleep = 256 + 2048;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

template <typename Pred>
void wait_until(Pred&& done) {
    for (int spins = 0; !done(); ++spins) {
        if (spins < kSpinsBeforeYield)
            cpu_relax();
        else
            std::this_thread::yield();
    }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    workers_.reserve(size_t(n_threads_ - 1));
    try {
        for (int t = 1; t < n_threads_; ++t) workers_.emplace_back(&ThreadPool::worker_main, this, t);
    } catch (...) {
        // Could not start every thread (std::system_error): stop the ones that did start, then report.
        stop_.store(true);
        { std::lock_guard<std::mutex> lock(sleep_mutex_); }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
        throw;
    }
}

ThreadPool::~ThreadPool() {
    stop_.store(true, std::memory_order_release);
    { std::lock_guard<std::mutex> lock(sleep_mutex_); }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
}

void ThreadPool::run(int64_t n, Task task, void* ctx) {
    if (n_threads_ == 1 || n == 1) {
        task(ctx, 0, n, 0);
        return;
    }
    task_ = task;
    ctx_ = ctx;
    n_ = n;
    chunk_ = std::max<int64_t>(1, n / (int64_t(n_threads_) * 8));
    next_.store(0, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    closed_.store(false);      // publishes the fields above to workers that register from now on
    generation_.fetch_add(1);  // wakes the spinning ones
    {
        // Taking the lock after the bump means a worker deciding to sleep either saw the new generation
        // or is already waiting and gets the notification.
        std::lock_guard<std::mutex> lock(sleep_mutex_);
        if (sleepers_ > 0) wake_.notify_all();
    }
    work(0);
    wait_until([&] { return done_.load(std::memory_order_acquire) == n; });
    closed_.store(true);
    wait_until([&] { return active_.load() == 0; });  // registered workers leave (or finish their chunk)
    if (error_) std::rethrow_exception(error_);
}

void ThreadPool::work(int thread) {
    for (;;) {
        const int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
        if (begin >= n_) return;
        const int64_t end = std::min(n_, begin + chunk_);
        try {
            task_(ctx_, begin, end, thread);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex_);
            if (!error_) error_ = std::current_exception();
        }
        done_.fetch_add(end - begin, std::memory_order_release);
    }
}

void ThreadPool::worker_main(int thread) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = generation_.load(std::memory_order_acquire)) == seen) {
            if (stop_.load(std::memory_order_acquire)) return;
            if (++spins < kSpinsBeforeYield) {
                cpu_relax();
                continue;
            }
            if (spins < kSpinsBeforeSleep) {
                std::this_thread::yield();
                continue;
            }
            std::unique_lock<std::mutex> lock(sleep_mutex_);
            ++sleepers_;
            wake_.wait(lock, [&] {
                return generation_.load(std::memory_order_acquire) != seen ||
                       stop_.load(std::memory_order_acquire);
            });
            --sleepers_;
            spins = 0;
        }
        seen = g;
        active_.fetch_add(1);
        if (!closed_.load()) work(thread);
        active_.fetch_sub(1);
    }
}

}  // namespace qrt
