#include "contract/cuda/htod_counter.h"

#include <cupti.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "util/error.h"

namespace resident::contract {
namespace {

std::atomic<uint64_t> g_htod_copies{0};
std::atomic<uint64_t> g_htod_bytes{0};
std::atomic<uint64_t> g_all_memcpy{0};
std::atomic<bool> g_active{false};

constexpr size_t kBufferBytes = 1 << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  // CUPTI requires 8-byte aligned buffers.
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_MEMCPY) continue;
    const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
    if (!g_active.load()) continue;
    g_all_memcpy += 1;
    if (m->copyKind == CUPTI_ACTIVITY_MEMCPY_KIND_HTOD) {
      g_htod_copies += m->copyCount > 0 ? m->copyCount : 1;
      g_htod_bytes += m->bytes;
    }
  }
  std::free(buffer);
}

void check(CUptiResult rc, const char* call) {
  if (rc == CUPTI_SUCCESS) return;
  const char* msg = nullptr;
  cuptiGetResultString(rc, &msg);
  throw Error(std::string("CUPTI: ") + call + ": " + (msg ? msg : "unknown error"));
}

}  // namespace

// Collection is enabled only between start() and stop(): with memcpy activity enabled all the
// time, CUPTI grows its own device buffers (4 MiB steps, seen on the H200) during inference,
// which the residency gate would then blame on the engine ("no growth after load").
HtodCounter::HtodCounter() {
  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed),
        "cuptiActivityRegisterCallbacks");
}

HtodCounter::~HtodCounter() {
  cuptiActivityFlushAll(1);
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
}

void HtodCounter::start() {
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY), "cuptiActivityEnable(MEMCPY)");
  g_active = false;
  check(cuptiActivityFlushAll(1), "cuptiActivityFlushAll");
  g_htod_copies = 0;
  g_htod_bytes = 0;
  g_all_memcpy = 0;
  g_active = true;
}

HtodCount HtodCounter::stop() {
  check(cuptiActivityFlushAll(1), "cuptiActivityFlushAll");
  g_active = false;
  cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
  return HtodCount{g_htod_copies.load(), g_htod_bytes.load(), g_all_memcpy.load()};
}

}  // namespace resident::contract
