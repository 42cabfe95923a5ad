// cpu::ThreadPool: every index of [0, n) is handed out exactly once, by parallel_for and by
// parallel_for_dynamic, whether the workers are still spinning from the previous call or have
// gone to sleep on the condition variable (a lost wake-up would hang the test, which ctest's
// timeout turns into a failure), and the pool shuts down from either state.
#include "cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace resident::cpu {
namespace {

// Counts how often each index of [0, n) was visited by one call.
std::vector<int> visits(ThreadPool& pool, int64_t n, int64_t grain, bool dynamic) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  const auto fn = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
  };
  if (dynamic)
    pool.parallel_for_dynamic(n, fn, grain);
  else
    pool.parallel_for(n, fn, grain);
  std::vector<int> out;
  for (const auto& s : seen) out.push_back(s.load());
  return out;
}

void expect_each_once(const std::vector<int>& v, const char* what) {
  for (size_t i = 0; i < v.size(); ++i)
    ASSERT_EQ(v[i], 1) << what << ": index " << i << " of " << v.size();
}

TEST(ThreadPool, EveryIndexExactlyOnceBackToBack) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    // Thousands of calls in a row: the workers are still spinning when the next one starts.
    for (int call = 0; call < 3000; ++call) {
      const int64_t n = 1 + call % 97, grain = 1 + call % 5;
      expect_each_once(visits(pool, n, grain, call % 2 == 1), "back to back");
    }
  }
}

TEST(ThreadPool, EveryIndexExactlyOnceAfterWorkersSleep) {
  ThreadPool pool(2);
  for (int call = 0; call < 6; ++call) {
    // Longer than the spin budget (~0.5 ms): the worker and the caller take the sleeping path.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    expect_each_once(visits(pool, 1000, 16, false), "after sleep");
    // A call whose worker share takes longer than the caller's spin: the caller sleeps.
    std::atomic<int64_t> total{0};
    pool.parallel_for(2, [&](int64_t b, int64_t e) {
      if (b > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      total.fetch_add(e - b);
    });
    EXPECT_EQ(total.load(), 2);
  }
}

TEST(ThreadPool, ShutsDownWhileSpinningOrSleeping) {
  {
    ThreadPool pool(2);
    expect_each_once(visits(pool, 64, 1, false), "then destroyed at once");
  }
  {
    ThreadPool pool(2);
    expect_each_once(visits(pool, 64, 1, false), "then destroyed asleep");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace
}  // namespace resident::cpu
