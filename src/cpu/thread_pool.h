// A small persistent thread pool for the CPU forward pass: parallel_for splits [0, n) into one
// contiguous range per thread. Results never depend on the thread count, because every output
// element is computed by exactly one thread in the canonical order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace resident::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), one per thread, and waits.
  // `grain` rounds range boundaries to multiples of it (e.g. rows handled in groups).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

  // Calls fn(begin, end) on the ranges [0, chunk), [chunk, 2 chunk), ... of [0, n), each
  // taken by whichever thread is free next, and waits. For work that is uneven or runs on
  // cores shared with other jobs: a slow thread takes fewer chunks instead of holding up the
  // rest. Which thread runs a range never changes a result (see above).
  void parallel_for_dynamic(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                            int64_t chunk);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  // A decode step makes ~13 parallel_for calls per layer, each a few tens of microseconds of
  // work: waking a sleeping worker through the condition variable cost about as much. So both
  // sides first spin on the atomics (about half a millisecond), then sleep on the condition
  // variables (generation_ and pending_ change under mutex_, so no wake-up is lost).
  std::mutex mutex_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t, int64_t)>* task_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace resident::cpu
