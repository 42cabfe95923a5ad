// GGUF v2/v3 reader (memory-mapped, every field bounds-checked) and writer.
//
// The file is untrusted input: every count, length, offset, shape and type read from it is
// checked against the file size and sane limits before use. Failures throw resident::Error with
// a message of the form "<path>: <field>: <what is wrong>"; nothing a file contains can crash,
// hang or exhaust memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace resident::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

std::string_view value_type_name(ValueType type);

// One metadata value. Scalars keep their declared type; read them through File's typed getters
// (get_uint/find_uint accept any unsigned or non-negative integer kind, get_float any number).
struct Value {
  ValueType type = ValueType::UINT8;
  ValueType elem_type = ValueType::UINT8;  // arrays only
  uint64_t u = 0;                          // UINT8..UINT64, BOOL
  int64_t i = 0;                           // INT8..INT64
  double f = 0.0;                          // FLOAT32, FLOAT64
  std::string s;                           // STRING
  std::vector<Value> array;                // ARRAY (may nest)

  bool is_integer() const;
  bool is_float() const;
};

struct TensorInfo {
  std::string name;
  uint32_t ggml_type = 0;      // raw id; quant::type_info() tells whether we can read it
  std::vector<uint64_t> dims;  // dims[0] is the row length (contiguous), as in ggml ne[]
  uint64_t offset = 0;         // relative to the start of the tensor data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping
};

class File {
 public:
  // Maps and validates the whole header and tensor table. Throws resident::Error.
  static File open(const std::string& path);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }

  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;

  // Typed lookups: throw "<path>: <key>: missing" or "...: expected <type>, found <type>".
  uint64_t get_uint(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  std::optional<uint64_t> find_uint(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;
  // Array of strings (tokens, merges); throws if the key exists with another type.
  const std::vector<Value>* find_array(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

  // The tensor data section: [data_begin, data_begin + data_bytes) of the mapping, holding
  // every tensor at its offset (this is what a device arena mirrors).
  const uint8_t* data_section() const { return data_; }
  uint64_t data_section_bytes() const { return data_bytes_; }
  uint64_t total_tensor_bytes() const;  // sum of n_bytes over tensors (the model's weight bytes)

 private:
  File() = default;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t size_ = 0;
  uint64_t alignment_ = 32;
  void* map_ = nullptr;
  const uint8_t* data_ = nullptr;
  uint64_t data_bytes_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<TensorInfo> tensors_;
};

// Builds a GGUF v3 file in memory and writes it (used by `resident synth` and tests).
class Writer {
 public:
  void add_uint32(std::string key, uint32_t v);
  void add_int32(std::string key, int32_t v);
  void add_uint64(std::string key, uint64_t v);
  void add_float32(std::string key, float v);
  void add_bool(std::string key, bool v);
  void add_string(std::string key, std::string v);
  void add_string_array(std::string key, std::vector<std::string> v);
  void add_int32_array(std::string key, std::vector<int32_t> v);
  void add_float32_array(std::string key, std::vector<float> v);
  // dims[0] is the row length. `bytes` must be exactly the size the type implies.
  void add_tensor(std::string name, uint32_t ggml_type, std::vector<uint64_t> dims,
                  std::vector<uint8_t> bytes);
  // Writes atomically (temp file + rename); throws resident::Error naming the path.
  void write(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    Value value;
  };
  struct PendingTensor {
    std::string name;
    uint32_t ggml_type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> bytes;
  };
  std::vector<Kv> kvs_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace resident::gguf
