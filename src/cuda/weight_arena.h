// The device weight arena: ONE allocation holding the GGUF tensor data section byte for byte, so
// a tensor's device address is base + its offset in that section (no per-tensor allocations, no
// converted shadow copies: GWR-001). Uploaded once, at construction, through pinned staging
// buffers; nothing is ever uploaded again.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/gguf.h"
#include "model/model.h"

namespace resident::cuda {

struct ArenaOptions {
  // Managed memory attached globally (cudaMemAttachGlobal == CU_MEM_ATTACH_GLOBAL), for systems
  // where CPU and GPU share memory (Grace, GWR-005); also forced by --memory unified.
  bool unified = false;
  uint64_t staging_bytes = uint64_t{64} << 20;  // each of the two pinned staging buffers
  int copy_threads = 0;                         // host threads filling staging; 0 = min(8, cores)
};

struct ArenaStats {
  uint64_t bytes = 0;            // allocation size (== the data section size)
  double upload_seconds = 0.0;   // wall clock from first staging copy to last byte on the device
  double upload_gb_per_s = 0.0;  // bytes / upload_seconds / 1e9
  std::string alloc_flag;        // "cudaMalloc" or "CU_MEM_ATTACH_GLOBAL" (what was really used)
};

class WeightArena {
 public:
  // Allocates and uploads file.data_section(). Throws resident::Error (no GPU, out of memory).
  WeightArena(const gguf::File& file, const ArenaOptions& options);
  ~WeightArena();
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;

  // Device address of a tensor; throws if the tensor does not lie inside the arena.
  const void* device_ptr(const Tensor& t) const;
  const uint8_t* base() const { return base_; }
  const ArenaStats& stats() const { return stats_; }

 private:
  uint8_t* base_ = nullptr;
  ArenaStats stats_;
};

}  // namespace resident::cuda
