// ThreadPool: persistent workers for the token loop.
//
// Workers are created once (by the Session) and live as long as the pool. parallel_for(n, fn) hands out
// [0, n) in small chunks through an atomic counter, the calling thread works too, and it returns as soon
// as every item is done, not when every worker has seen the job: on a shared machine a descheduled worker
// just takes fewer chunks instead of stalling the caller. Between jobs a worker spins for a short while
// (a decode step issues hundreds of jobs back to back), yielding its core to anyone who wants it, then
// sleeps on a condition variable so an idle model costs no CPU.
//
// Job protocol: the caller writes the job, opens it (closed_ = false) and bumps generation_. A worker that
// sees a new generation registers in active_ and only then checks closed_; the caller, once all items
// are done, sets closed_ and waits for active_ to drain. A late worker therefore either registered in time
// (and is waited for) or sees the job closed and touches nothing (all four are seq_cst).
//
// fn(begin, end, thread) is called on disjoint ranges; `thread` in [0, n_threads()) names the thread
// running it (0 = the caller), for per-thread scratch buffers. Nothing allocates per job. The first
// exception thrown by fn is rethrown by parallel_for after the job has drained. Jobs do not nest, and one
// pool serves one caller at a time (the Session holds a lock).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace qrt {

class ThreadPool {
  public:
    // n_threads counts the caller: 1 = no workers, everything runs inline.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }

    template <typename Fn>
    void parallel_for(int64_t n, Fn&& fn) {
        if (n <= 0) return;
        auto call = [](void* ctx, int64_t begin, int64_t end, int thread) {
            (*static_cast<Fn*>(ctx))(begin, end, thread);
        };
        run(n, call, &fn);
    }

  private:
    using Task = void (*)(void* ctx, int64_t begin, int64_t end, int thread);

    void run(int64_t n, Task task, void* ctx);
    void work(int thread);  // take chunks of the current job until none are left
    void worker_main(int thread);

    int n_threads_;
    std::vector<std::thread> workers_;

    // The current job (see the protocol above).
    Task task_ = nullptr;
    void* ctx_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 1;
    std::atomic<int64_t> next_{0};  // first item not yet handed out
    std::atomic<int64_t> done_{0};  // items finished
    std::atomic<bool> closed_{true};
    std::atomic<int> active_{0};  // workers registered in the current job
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> stop_{false};
    std::exception_ptr error_;
    std::mutex error_mutex_;

    // Sleeping workers wait here for a new generation.
    std::mutex sleep_mutex_;
    std::condition_variable wake_;
    int sleepers_ = 0;  // guarded by sleep_mutex_
};

}  // namespace qrt
