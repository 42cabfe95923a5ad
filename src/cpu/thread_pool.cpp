#include "cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>

namespace resident::cpu {
namespace {

// Spin iterations (one pause each, ~20-40 ns on Zen 3) before a thread sleeps.
constexpr int kSpin = 20000;

// Spins until ready() or the budget is spent; returns ready().
template <typename F>
bool spin_until(F&& ready) {
  for (int i = 0; i < kSpin; ++i) {
    if (ready()) return true;
    _mm_pause();
  }
  return ready();
}

std::pair<int64_t, int64_t> range_of(int index, int n_threads, int64_t n, int64_t grain) {
  const int64_t units = (n + grain - 1) / grain;
  const int64_t begin = units * index / n_threads * grain;
  const int64_t end = std::min(n, units * (index + 1) / n_threads * grain);
  return {std::min(begin, n), end};
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                              int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {  // one unit of work (a decode token's quantization)
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &fn;
    n_ = n;
    grain_ = grain;
    pending_.store(n_threads_ - 1);
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  auto [begin, end] = range_of(0, n_threads_, n, grain);
  if (begin < end) fn(begin, end);
  const auto done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, done);
  }
  task_ = nullptr;
}

void ThreadPool::parallel_for_dynamic(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                                      int64_t chunk) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  std::atomic<int64_t> next{0};
  // One call per thread, each taking chunks until none are left.
  parallel_for(n_threads_, [&](int64_t, int64_t) {
    for (;;) {
      const int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= n) break;
      fn(begin, std::min(n, begin + chunk));
    }
  });
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* task;
    int64_t n, grain;
    const auto ready = [&] {
      return stop_.load(std::memory_order_relaxed) ||
             generation_.load(std::memory_order_acquire) != seen;
    };
    if (!spin_until(ready)) {
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, ready);
    }
    {
      // The task fields were written under the mutex before generation_ moved on.
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_.load()) return;
      seen = generation_.load();
      task = task_;
      n = n_;
      grain = grain_;
    }
    auto [begin, end] = range_of(index, n_threads_, n, grain);
    if (begin < end) (*task)(begin, end);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller checks pending_ under it
      done_cv_.notify_one();
    }
  }
}

}  // namespace resident::cpu
