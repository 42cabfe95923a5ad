// Counts host-to-device copies with CUPTI activity records (kind MEMCPY, copyKind HTOD) on all
// streams and contexts of this process: an instrument independent of the engine, so it sees
// copies the engine did not mean to make (a library's, a stray cudaMemcpy, a graph memcpy node).
#pragma once

#include <cstdint>

namespace resident::contract {

struct HtodCount {
  uint64_t copies = 0;  // HtoD memcpy operations (a batched record counts copyCount operations)
  uint64_t bytes = 0;
  uint64_t all_memcpy = 0;  // memcpy records of any direction, for the report
};

class HtodCounter {
 public:
  // Registers with CUPTI; throws resident::Error if CUPTI is unavailable. Records are collected
  // only between start() and stop().
  HtodCounter();
  ~HtodCounter();
  HtodCounter(const HtodCounter&) = delete;
  HtodCounter& operator=(const HtodCounter&) = delete;

  // Enables memcpy activity collection from now on, with a zero count.
  void start();
  // Flushes CUPTI's buffers (after the caller synchronized the device) and returns the count
  // since start().
  HtodCount stop();
};

}  // namespace resident::contract
