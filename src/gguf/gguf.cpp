// GGUF v2/v3 reader and v3 writer. The reader treats the file as hostile: every read goes
// through a bounds-checked cursor, every count is checked against the bytes that remain before
// anything is allocated for it, and every tensor is checked against the data section.
// Limits and their reasons are listed in docs/gguf.md.
#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "gguf/gguf_fuzz.h"
#include "quant/types.h"
#include "util/error.h"

namespace resident::gguf {

namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint64_t kDefaultAlignment = 32;
// The spec asks for a multiple of 8; the upper bound only keeps the padding arithmetic and the
// data-section start sane (a page-sized alignment is the largest anyone uses).
constexpr uint64_t kMinAlignment = 8;
constexpr uint64_t kMaxAlignment = 1 << 16;
constexpr uint64_t kMaxKeyBytes = 65535;  // spec limit for keys
// The spec says 64; some converters are sloppy, so be lenient but bounded.
constexpr uint64_t kMaxTensorNameBytes = 1024;
constexpr uint32_t kMaxDims = 4;  // ggml's GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;
// Real files hold < 100 keys and < 10k tensors. Each parsed entry costs ~10x its smallest
// encoding in memory, so these caps (not just the file size) bound what a crafted file can make
// us allocate.
constexpr uint64_t kMaxKvCount = uint64_t{1} << 16;
constexpr uint64_t kMaxTensorCount = uint64_t{1} << 20;
// Chat templates are ~10 KB and tokens a few bytes; nothing legitimate comes near 16 MiB.
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 24;
// Containers are reserved from file-declared counts only up to this; beyond it they grow as
// entries are actually parsed, so memory follows bytes read, not bytes claimed.
constexpr uint64_t kMaxReserve = 4096;
// A decoded element costs sizeof(Value) (~88 bytes) however small it is in the file, so the
// "count <= remaining bytes" rule alone would let a 1 GB file of uint8 arrays ask for 88 GB.
// The largest real tokenizers (256k vocab: tokens, scores, token_type, merges) hold ~1M
// elements in total; 4M leaves headroom and caps the worst case near 370 MB.
constexpr uint64_t kMaxMetadataElements = uint64_t{1} << 22;
// Smallest possible encodings, used to bound counts by the bytes that remain.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;  // key len, 1-byte key, type, uint8
constexpr uint64_t kMinTensorInfoBytes =
    8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, 1 dim, type, offset

std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

// Names and keys come from the file: escape anything that could break the one-line error
// format (newlines, control bytes) and cap the length so a 60 KB key cannot flood a terminal.
std::string printable(std::string_view s) {
  constexpr size_t kMaxShown = 96;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'') {
      out += format("\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMaxShown) out += format("...(%zu bytes)", s.size());
  return out;
}

[[noreturn]] void fail(const std::string& path, const std::string& field,
                       const std::string& problem) {
  throw Error(path + ": " + field + ": " + problem);
}

bool is_valid_value_type(uint32_t t) {
  return t <= static_cast<uint32_t>(ValueType::FLOAT64);
}

// Smallest encoding of one element of an array of `t`.
uint64_t min_encoded_bytes(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
    case ValueType::STRING:
      return 8;  // the length prefix
    case ValueType::ARRAY:
      return 12;  // element type + count
  }
  return 1;
}

// Bounds-checked little-endian reader over the whole file. `field` arguments are callables
// producing the field description, so the happy path (300k tokenizer strings) never formats.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* base, uint64_t size)
      : path_(path), base_(base), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

  template <class Field>
  void need(uint64_t n, const char* what, const Field& field) const {
    if (n > remaining()) {
      fail(path_, field(),
           format("truncated: %s needs %llu bytes at offset %llu, file size is %llu", what,
                  static_cast<unsigned long long>(n), static_cast<unsigned long long>(pos_),
                  static_cast<unsigned long long>(size_)));
    }
  }

  template <class T, class Field>
  T read(const char* what, const Field& field) {
    need(sizeof(T), what, field);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  template <class Field>
  std::string_view read_string(const char* what, uint64_t max_len, const Field& field) {
    const auto len = read<uint64_t>(what, field);
    if (len > remaining()) {
      fail(
          path_, field(),
          format("%s length %llu runs past end of file (%llu bytes left at offset %llu)", what,
                 static_cast<unsigned long long>(len), static_cast<unsigned long long>(remaining()),
                 static_cast<unsigned long long>(pos_)));
    }
    if (len > max_len) {
      fail(path_, field(),
           format("%s length %llu exceeds the limit of %llu bytes", what,
                  static_cast<unsigned long long>(len), static_cast<unsigned long long>(max_len)));
    }
    std::string_view s(reinterpret_cast<const char*>(base_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

struct Parsed {
  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;  // from the start of the file
  uint64_t data_bytes = 0;   // extent used by tensors
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<TensorInfo> tensors;
};

class Parser {
 public:
  Parser(const std::string& path, const uint8_t* base, uint64_t size)
      : cur_(path, base, size), path_(path), base_(base), size_(size) {}

  Parsed parse() {
    read_header();
    read_metadata();
    read_alignment();
    read_tensor_infos();
    place_tensors();
    return std::move(out_);
  }

 private:
  void read_header() {
    auto field_magic = [] { return std::string("magic"); };
    if (size_ < sizeof kMagic) {
      fail(path_, "magic",
           format("file is %llu bytes, too small to be GGUF",
                  static_cast<unsigned long long>(size_)));
    }
    char magic[4];
    std::memcpy(magic, base_, 4);
    cur_.read<uint32_t>("magic", field_magic);
    if (std::memcmp(magic, kMagic, 4) != 0) {
      fail(path_, "magic",
           format("not a GGUF file (starts with %02x %02x %02x %02x, expected 47 47 55 46 'GGUF')",
                  static_cast<unsigned char>(magic[0]), static_cast<unsigned char>(magic[1]),
                  static_cast<unsigned char>(magic[2]), static_cast<unsigned char>(magic[3])));
    }
    const auto version = cur_.read<uint32_t>("version", [] { return std::string("version"); });
    if (version == 1) {
      fail(path_, "version",
           "GGUF v1 is not supported (32-bit counts, pre-2023-09 files); re-convert the model "
           "with a current llama.cpp");
    }
    if (version == 0x02000000u || version == 0x03000000u) {
      fail(path_, "version", "big-endian GGUF is not supported");
    }
    if (version != 2 && version != 3) {
      fail(path_, "version", format("unsupported GGUF version %u (expected 2 or 3)", version));
    }
    out_.version = version;
    tensor_count_ = cur_.read<uint64_t>("tensor_count", [] { return std::string("tensor_count"); });
    kv_count_ = cur_.read<uint64_t>("kv_count", [] { return std::string("kv_count"); });
    if (kv_count_ > cur_.remaining() / kMinKvBytes) {
      fail(path_, "kv_count",
           format("%llu key/value pairs cannot fit in the %llu bytes that remain",
                  static_cast<unsigned long long>(kv_count_),
                  static_cast<unsigned long long>(cur_.remaining())));
    }
    if (kv_count_ > kMaxKvCount) {
      fail(path_, "kv_count",
           format("%llu key/value pairs exceed the limit of %llu",
                  static_cast<unsigned long long>(kv_count_),
                  static_cast<unsigned long long>(kMaxKvCount)));
    }
    if (tensor_count_ > kMaxTensorCount) {
      fail(path_, "tensor_count",
           format("%llu tensors exceed the limit of %llu",
                  static_cast<unsigned long long>(tensor_count_),
                  static_cast<unsigned long long>(kMaxTensorCount)));
    }
    if (tensor_count_ > cur_.remaining() / kMinTensorInfoBytes) {
      fail(path_, "tensor_count",
           format("%llu tensor infos cannot fit in the %llu bytes that remain",
                  static_cast<unsigned long long>(tensor_count_),
                  static_cast<unsigned long long>(cur_.remaining())));
    }
  }

  void read_metadata() {
    out_.metadata.reserve(std::min(kv_count_, kMaxReserve));
    std::vector<std::string_view> keys;  // views into the file: stable, no copies
    keys.reserve(std::min(kv_count_, kMaxReserve));
    for (uint64_t k = 0; k < kv_count_; ++k) {
      auto key_field = [k] {
        return format("metadata key #%llu", static_cast<unsigned long long>(k));
      };
      const std::string_view key_view = cur_.read_string("key", kMaxKeyBytes, key_field);
      if (key_view.empty()) fail(path_, key_field(), "empty key");
      std::string key(key_view);
      const std::string field = "metadata '" + printable(key) + "'";
      keys.push_back(key_view);
      const auto type = cur_.read<uint32_t>("value type", [&] { return field; });
      if (!is_valid_value_type(type)) {
        fail(path_, field, format("unknown value type %u", type));
      }
      Value v = read_value(static_cast<ValueType>(type), field, 0);
      out_.metadata.emplace_back(std::move(key), std::move(v));
    }
    reject_duplicates(std::move(keys), "metadata", "duplicate key");
  }

  // Sorting rather than hashing: std::hash has a fixed seed, so a crafted file full of
  // colliding names could make a hash set quadratic; a sort stays O(n log n) on any input.
  void reject_duplicates(std::vector<std::string_view> names, const char* what,
                         const char* problem) const {
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) fail(path_, std::string(what) + " '" + printable(*dup) + "'", problem);
  }

  template <class Field>
  Value read_scalar(ValueType type, const Field& field) {
    Value v;
    v.type = type;
    switch (type) {
      case ValueType::UINT8:
        v.u = cur_.read<uint8_t>("uint8", field);
        break;
      case ValueType::INT8:
        v.i = cur_.read<int8_t>("int8", field);
        break;
      case ValueType::UINT16:
        v.u = cur_.read<uint16_t>("uint16", field);
        break;
      case ValueType::INT16:
        v.i = cur_.read<int16_t>("int16", field);
        break;
      case ValueType::UINT32:
        v.u = cur_.read<uint32_t>("uint32", field);
        break;
      case ValueType::INT32:
        v.i = cur_.read<int32_t>("int32", field);
        break;
      case ValueType::UINT64:
        v.u = cur_.read<uint64_t>("uint64", field);
        break;
      case ValueType::INT64:
        v.i = cur_.read<int64_t>("int64", field);
        break;
      case ValueType::FLOAT32:
        v.f = cur_.read<float>("float32", field);
        break;
      case ValueType::FLOAT64:
        v.f = cur_.read<double>("float64", field);
        break;
      case ValueType::BOOL:
        v.u = cur_.read<uint8_t>("bool", field) != 0 ? 1 : 0;
        break;
      case ValueType::STRING:
        v.s = std::string(cur_.read_string("string", kMaxStringBytes, field));
        break;
      case ValueType::ARRAY:
        break;  // handled by read_value
    }
    return v;
  }

  Value read_value(ValueType type, const std::string& field, int depth) {
    if (type != ValueType::ARRAY) return read_scalar(type, [&] { return field; });
    if (depth >= kMaxArrayDepth) {
      fail(path_, field, format("arrays nested deeper than %d levels", kMaxArrayDepth));
    }
    const auto elem_raw = cur_.read<uint32_t>("array element type", [&] { return field; });
    if (!is_valid_value_type(elem_raw)) {
      fail(path_, field, format("unknown array element type %u", elem_raw));
    }
    const auto elem = static_cast<ValueType>(elem_raw);
    const auto count = cur_.read<uint64_t>("array count", [&] { return field; });
    const uint64_t min_bytes = min_encoded_bytes(elem);
    if (count > cur_.remaining() / min_bytes) {
      fail(
          path_, field,
          format("array count %llu of %s needs at least %llu bytes per element, only %llu bytes "
                 "remain",
                 static_cast<unsigned long long>(count), std::string(value_type_name(elem)).c_str(),
                 static_cast<unsigned long long>(min_bytes),
                 static_cast<unsigned long long>(cur_.remaining())));
    }
    if (count > kMaxMetadataElements - elements_used_) {
      fail(path_, field,
           format("array count %llu exceeds the limit of %llu metadata array elements in total",
                  static_cast<unsigned long long>(count),
                  static_cast<unsigned long long>(kMaxMetadataElements)));
    }
    elements_used_ += count;
    Value v;
    v.type = ValueType::ARRAY;
    v.elem_type = elem;
    v.array.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      if (elem == ValueType::ARRAY) {
        v.array.push_back(read_value(
            elem, field + format("[%llu]", static_cast<unsigned long long>(i)), depth + 1));
      } else {
        v.array.push_back(read_scalar(
            elem, [&] { return field + format("[%llu]", static_cast<unsigned long long>(i)); }));
      }
    }
    return v;
  }

  void read_alignment() {
    for (const auto& [key, v] : out_.metadata) {
      if (key != "general.alignment") continue;
      const std::string field = "metadata 'general.alignment'";
      uint64_t a = 0;
      if (v.type == ValueType::UINT8 || v.type == ValueType::UINT16 ||
          v.type == ValueType::UINT32 || v.type == ValueType::UINT64) {
        a = v.u;
      } else if (v.type == ValueType::INT8 || v.type == ValueType::INT16 ||
                 v.type == ValueType::INT32 || v.type == ValueType::INT64) {
        if (v.i < 0)
          fail(path_, field, format("negative alignment %lld", static_cast<long long>(v.i)));
        a = static_cast<uint64_t>(v.i);
      } else {
        fail(path_, field,
             "expected an unsigned integer, found " + std::string(value_type_name(v.type)));
      }
      if (a == 0 || (a & (a - 1)) != 0) {
        fail(path_, field,
             format("alignment %llu is not a power of two", static_cast<unsigned long long>(a)));
      }
      if (a < kMinAlignment || a > kMaxAlignment) {
        fail(path_, field,
             format("alignment %llu is outside %llu..%llu", static_cast<unsigned long long>(a),
                    static_cast<unsigned long long>(kMinAlignment),
                    static_cast<unsigned long long>(kMaxAlignment)));
      }
      out_.alignment = a;
    }
  }

  void read_tensor_infos() {
    out_.tensors.reserve(std::min(tensor_count_, kMaxReserve));
    std::vector<std::string_view> names;  // views into the file
    names.reserve(std::min(tensor_count_, kMaxReserve));
    for (uint64_t t = 0; t < tensor_count_; ++t) {
      auto name_field = [t] {
        return format("tensor #%llu name", static_cast<unsigned long long>(t));
      };
      const std::string_view name_view = cur_.read_string("name", kMaxTensorNameBytes, name_field);
      if (name_view.empty()) fail(path_, name_field(), "empty tensor name");
      TensorInfo info;
      info.name = std::string(name_view);
      const std::string field = "tensor '" + printable(info.name) + "'";
      auto f = [&] { return field; };
      names.push_back(name_view);

      const auto n_dims = cur_.read<uint32_t>("n_dims", f);
      if (n_dims < 1 || n_dims > kMaxDims) {
        fail(path_, field, format("n_dims %u is outside 1..%u", n_dims, kMaxDims));
      }
      info.dims.resize(n_dims);
      uint64_t n_elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        info.dims[d] = cur_.read<uint64_t>("dims", f);
        if (info.dims[d] == 0) fail(path_, field, format("dim %u is 0", d));
        // int64 because model code keeps element counts signed (ggml's ne[] is int64_t too).
        if (__builtin_mul_overflow(n_elements, info.dims[d], &n_elements) ||
            n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          fail(path_, field,
               "shape " + shape_string(info.dims, d + 1) + " overflows int64 elements");
        }
      }
      info.n_elements = n_elements;
      info.ggml_type = cur_.read<uint32_t>("type", f);
      const auto type = quant::type_info(info.ggml_type);
      if (!type) {
        fail(path_, field,
             format("type %u (%s) is not supported", info.ggml_type,
                    std::string(quant::ggml_type_name(info.ggml_type)).c_str()));
      }
      const auto block_elems = static_cast<uint64_t>(type->block_elems);
      if (info.dims[0] % block_elems != 0) {
        fail(path_, field,
             format("row length %llu is not a multiple of the %s block size %llu",
                    static_cast<unsigned long long>(info.dims[0]), std::string(type->name).c_str(),
                    static_cast<unsigned long long>(block_elems)));
      }
      // n_elements / block_elems is exact: dims[0] is a multiple of the block size.
      if (__builtin_mul_overflow(n_elements / block_elems, static_cast<uint64_t>(type->block_bytes),
                                 &info.n_bytes)) {
        fail(path_, field, "byte size of shape " + shape_string(info.dims, n_dims) + " overflows");
      }
      info.offset = cur_.read<uint64_t>("offset", f);
      out_.tensors.push_back(std::move(info));
    }
    reject_duplicates(std::move(names), "tensor", "duplicate tensor name");
  }

  void place_tensors() {
    const uint64_t a = out_.alignment;
    const uint64_t pos = cur_.pos();
    // pos <= size_ < 2^63 in practice, but stay exact: the padded start may pass the file end.
    const uint64_t start = pos + (a - pos % a) % a;
    out_.data_offset = start;
    if (out_.tensors.empty()) return;
    if (start > size_) {
      fail(
          path_, "tensor data",
          format("section starts at offset %llu (after alignment padding), past end of file (%llu)",
                 static_cast<unsigned long long>(start), static_cast<unsigned long long>(size_)));
    }
    const uint64_t avail = size_ - start;
    for (auto& t : out_.tensors) {
      const std::string field = "tensor '" + printable(t.name) + "'";
      if (t.offset % a != 0) {
        fail(path_, field,
             format("data offset %llu is not a multiple of the alignment %llu",
                    static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(a)));
      }
      if (t.offset > avail || t.n_bytes > avail - t.offset) {
        fail(
            path_, field,
            format("data offset %llu + %llu bytes past end of file (%llu; data section starts at "
                   "%llu)",
                   static_cast<unsigned long long>(t.offset),
                   static_cast<unsigned long long>(t.n_bytes),
                   static_cast<unsigned long long>(size_), static_cast<unsigned long long>(start)));
      }
      t.data = base_ + start + t.offset;
      out_.data_bytes = std::max(out_.data_bytes, t.offset + t.n_bytes);
    }
    // Overlapping tensors would alias weights: a writer bug or a crafted file, never legitimate.
    std::vector<size_t> order(out_.tensors.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(),
              [&](size_t x, size_t y) { return out_.tensors[x].offset < out_.tensors[y].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
      const auto& prev = out_.tensors[order[k - 1]];
      const auto& cur = out_.tensors[order[k]];
      if (prev.offset + prev.n_bytes > cur.offset) {
        fail(path_, "tensor '" + printable(cur.name) + "'",
             format("data at offset %llu overlaps tensor '%s' (offset %llu, %llu bytes)",
                    static_cast<unsigned long long>(cur.offset), printable(prev.name).c_str(),
                    static_cast<unsigned long long>(prev.offset),
                    static_cast<unsigned long long>(prev.n_bytes)));
      }
    }
  }

  static std::string shape_string(const std::vector<uint64_t>& dims, size_t n) {
    std::string s = "[";
    for (size_t i = 0; i < n; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims[i]);
    }
    return s + "]";
  }

  Cursor cur_;
  const std::string& path_;
  const uint8_t* base_;
  uint64_t size_;
  uint64_t tensor_count_ = 0;
  uint64_t kv_count_ = 0;
  uint64_t elements_used_ = 0;
  Parsed out_;
};

std::string type_mismatch(ValueType found) {
  return "found " + std::string(value_type_name(found));
}

}  // namespace

std::string_view value_type_name(ValueType type) {
  switch (type) {
    case ValueType::UINT8:
      return "uint8";
    case ValueType::INT8:
      return "int8";
    case ValueType::UINT16:
      return "uint16";
    case ValueType::INT16:
      return "int16";
    case ValueType::UINT32:
      return "uint32";
    case ValueType::INT32:
      return "int32";
    case ValueType::FLOAT32:
      return "float32";
    case ValueType::BOOL:
      return "bool";
    case ValueType::STRING:
      return "string";
    case ValueType::ARRAY:
      return "array";
    case ValueType::UINT64:
      return "uint64";
    case ValueType::INT64:
      return "int64";
    case ValueType::FLOAT64:
      return "float64";
  }
  return "unknown";
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

bool Value::is_float() const {
  return type == ValueType::FLOAT32 || type == ValueType::FLOAT64;
}

namespace detail {

void parse_buffer(const std::string& path, const uint8_t* data, size_t size) {
  Parsed parsed = Parser(path, data, size).parse();
  // Touch what callers touch, so the fuzzer exercises it too.
  uint64_t total = 0;
  for (const auto& t : parsed.tensors) total += t.n_bytes;
  if (total > parsed.data_bytes) throw Error(path + ": internal: tensor bytes exceed data section");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// File

File File::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "open", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail(path, "open", std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "open", "not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < sizeof kMagic) {
    ::close(fd);
    fail(path, "magic",
         format("file is %llu bytes, too small to be GGUF", static_cast<unsigned long long>(size)));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail(path, "mmap", std::strerror(map_errno));

  File file;
  file.path_ = path;
  file.size_ = size;
  file.map_ = map;  // owned from here: the destructor unmaps if parsing throws
  Parsed parsed = Parser(file.path_, static_cast<const uint8_t*>(map), size).parse();
  file.version_ = parsed.version;
  file.alignment_ = parsed.alignment;
  // With no tensors the padded data start may lie past the end; keep the pointer in range.
  file.data_ = static_cast<const uint8_t*>(map) + std::min(parsed.data_offset, size);
  file.data_bytes_ = parsed.data_bytes;
  file.metadata_ = std::move(parsed.metadata);
  file.tensors_ = std::move(parsed.tensors);
  return file;
}

File::File(File&& other) noexcept {
  *this = std::move(other);
}

File& File::operator=(File&& other) noexcept {
  if (this == &other) return *this;
  if (map_ != nullptr) ::munmap(map_, size_);
  path_ = std::move(other.path_);
  version_ = other.version_;
  size_ = other.size_;
  alignment_ = other.alignment_;
  map_ = std::exchange(other.map_, nullptr);
  data_ = std::exchange(other.data_, nullptr);
  data_bytes_ = std::exchange(other.data_bytes_, 0);
  metadata_ = std::move(other.metadata_);
  tensors_ = std::move(other.tensors_);
  return *this;
}

File::~File() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

const Value* File::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {

[[noreturn]] void fail_key(const std::string& path, std::string_view key,
                           const std::string& problem) {
  fail(path, std::string(key), problem);
}

uint64_t as_uint(const std::string& path, std::string_view key, const Value& v) {
  if (!v.is_integer())
    fail_key(path, key, "expected an unsigned integer, " + type_mismatch(v.type));
  const bool is_signed = v.type == ValueType::INT8 || v.type == ValueType::INT16 ||
                         v.type == ValueType::INT32 || v.type == ValueType::INT64;
  if (!is_signed) return v.u;
  if (v.i < 0) {
    fail_key(path, key,
             format("expected an unsigned integer, found negative %s %lld",
                    std::string(value_type_name(v.type)).c_str(), static_cast<long long>(v.i)));
  }
  return static_cast<uint64_t>(v.i);
}

double as_float(const std::string& path, std::string_view key, const Value& v) {
  if (v.is_float()) return v.f;
  if (v.is_integer()) {
    const bool is_signed = v.type == ValueType::INT8 || v.type == ValueType::INT16 ||
                           v.type == ValueType::INT32 || v.type == ValueType::INT64;
    return is_signed ? static_cast<double>(v.i) : static_cast<double>(v.u);
  }
  fail_key(path, key, "expected float32, " + type_mismatch(v.type));
}

bool as_bool(const std::string& path, std::string_view key, const Value& v) {
  if (v.type != ValueType::BOOL) fail_key(path, key, "expected bool, " + type_mismatch(v.type));
  return v.u != 0;
}

const std::string& as_string(const std::string& path, std::string_view key, const Value& v) {
  if (v.type != ValueType::STRING) fail_key(path, key, "expected string, " + type_mismatch(v.type));
  return v.s;
}

}  // namespace

uint64_t File::get_uint(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) fail_key(path_, key, "missing");
  return as_uint(path_, key, *v);
}

double File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) fail_key(path_, key, "missing");
  return as_float(path_, key, *v);
}

bool File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) fail_key(path_, key, "missing");
  return as_bool(path_, key, *v);
}

const std::string& File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) fail_key(path_, key, "missing");
  return as_string(path_, key, *v);
}

std::optional<uint64_t> File::find_uint(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  return as_uint(path_, key, *v);
}

std::optional<double> File::find_float(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  return as_float(path_, key, *v);
}

std::optional<bool> File::find_bool(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  return as_bool(path_, key, *v);
}

std::optional<std::string> File::find_string(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  return as_string(path_, key, *v);
}

const std::vector<Value>* File::find_array(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return nullptr;
  if (v->type != ValueType::ARRAY)
    fail_key(path_, key, "expected array, " + type_mismatch(v->type));
  return &v->array;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t File::total_tensor_bytes() const {
  uint64_t total = 0;
  for (const auto& t : tensors_) total += t.n_bytes;  // no overflow: disjoint ranges of the file
  return total;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

[[noreturn]] void fail_writer(const std::string& what, const std::string& problem) {
  throw Error("gguf writer: " + what + ": " + problem);
}

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  put_bytes(out, &v, sizeof v);
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

// Encodes the payload of `v` (without its type tag); arrays carry their element type and count.
void put_value(std::vector<uint8_t>& out, const Value& v) {
  switch (v.type) {
    case ValueType::UINT8:
      put<uint8_t>(out, static_cast<uint8_t>(v.u));
      break;
    case ValueType::INT8:
      put<int8_t>(out, static_cast<int8_t>(v.i));
      break;
    case ValueType::UINT16:
      put<uint16_t>(out, static_cast<uint16_t>(v.u));
      break;
    case ValueType::INT16:
      put<int16_t>(out, static_cast<int16_t>(v.i));
      break;
    case ValueType::UINT32:
      put<uint32_t>(out, static_cast<uint32_t>(v.u));
      break;
    case ValueType::INT32:
      put<int32_t>(out, static_cast<int32_t>(v.i));
      break;
    case ValueType::UINT64:
      put<uint64_t>(out, v.u);
      break;
    case ValueType::INT64:
      put<int64_t>(out, v.i);
      break;
    case ValueType::FLOAT32:
      put<float>(out, static_cast<float>(v.f));
      break;
    case ValueType::FLOAT64:
      put<double>(out, v.f);
      break;
    case ValueType::BOOL:
      put<uint8_t>(out, v.u != 0 ? 1 : 0);
      break;
    case ValueType::STRING:
      put_string(out, v.s);
      break;
    case ValueType::ARRAY:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(out, v.array.size());
      for (const auto& e : v.array) put_value(out, e);
      break;
  }
}

Value scalar(ValueType type) {
  Value v;
  v.type = type;
  return v;
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(path, "write", std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void Writer::add_uint32(std::string key, uint32_t v) {
  if (key == "general.alignment" && v != kDefaultAlignment) {
    fail_writer(key, format("the writer always aligns to %llu, cannot declare %u",
                            static_cast<unsigned long long>(kDefaultAlignment), v));
  }
  Value value = scalar(ValueType::UINT32);
  value.u = v;
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_int32(std::string key, int32_t v) {
  Value value = scalar(ValueType::INT32);
  value.i = v;
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_uint64(std::string key, uint64_t v) {
  Value value = scalar(ValueType::UINT64);
  value.u = v;
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_float32(std::string key, float v) {
  Value value = scalar(ValueType::FLOAT32);
  value.f = v;
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_bool(std::string key, bool v) {
  Value value = scalar(ValueType::BOOL);
  value.u = v ? 1 : 0;
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_string(std::string key, std::string v) {
  Value value = scalar(ValueType::STRING);
  value.s = std::move(v);
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_string_array(std::string key, std::vector<std::string> v) {
  Value value = scalar(ValueType::ARRAY);
  value.elem_type = ValueType::STRING;
  value.array.reserve(v.size());
  for (auto& s : v) {
    Value e = scalar(ValueType::STRING);
    e.s = std::move(s);
    value.array.push_back(std::move(e));
  }
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_int32_array(std::string key, std::vector<int32_t> v) {
  Value value = scalar(ValueType::ARRAY);
  value.elem_type = ValueType::INT32;
  value.array.reserve(v.size());
  for (int32_t x : v) {
    Value e = scalar(ValueType::INT32);
    e.i = x;
    value.array.push_back(std::move(e));
  }
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_float32_array(std::string key, std::vector<float> v) {
  Value value = scalar(ValueType::ARRAY);
  value.elem_type = ValueType::FLOAT32;
  value.array.reserve(v.size());
  for (float x : v) {
    Value e = scalar(ValueType::FLOAT32);
    e.f = x;
    value.array.push_back(std::move(e));
  }
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::add_tensor(std::string name, uint32_t ggml_type, std::vector<uint64_t> dims,
                        std::vector<uint8_t> bytes) {
  const std::string what = "tensor '" + name + "'";
  const auto type = quant::type_info(ggml_type);
  if (!type) {
    fail_writer(what, format("type %u (%s) is not supported", ggml_type,
                             std::string(quant::ggml_type_name(ggml_type)).c_str()));
  }
  if (dims.empty() || dims.size() > kMaxDims) {
    fail_writer(what, format("n_dims %zu is outside 1..%u", dims.size(), kMaxDims));
  }
  uint64_t n = 1;
  for (uint64_t d : dims) {
    if (d == 0) fail_writer(what, "a dimension is 0");
    if (__builtin_mul_overflow(n, d, &n)) fail_writer(what, "element count overflows");
  }
  const auto block = static_cast<uint64_t>(type->block_elems);
  if (dims[0] % block != 0) {
    fail_writer(what,
                format("row length %llu is not a multiple of the %s block size %llu",
                       static_cast<unsigned long long>(dims[0]), std::string(type->name).c_str(),
                       static_cast<unsigned long long>(block)));
  }
  const uint64_t expected = n / block * static_cast<uint64_t>(type->block_bytes);
  if (bytes.size() != expected) {
    fail_writer(what,
                format("%zu bytes given, type %s needs %llu", bytes.size(),
                       std::string(type->name).c_str(), static_cast<unsigned long long>(expected)));
  }
  tensors_.push_back({std::move(name), ggml_type, std::move(dims), std::move(bytes)});
}

void Writer::write(const std::string& path) const {
  // The reader rejects duplicates, so refuse to produce them.
  std::unordered_set<std::string_view> keys;
  for (const auto& kv : kvs_) {
    if (kv.key.empty()) fail_writer("metadata key", "empty key");
    if (!keys.insert(kv.key).second) fail_writer("metadata '" + kv.key + "'", "duplicate key");
  }
  std::unordered_set<std::string_view> names;
  for (const auto& t : tensors_) {
    if (t.name.empty()) fail_writer("tensor name", "empty tensor name");
    if (!names.insert(t.name).second)
      fail_writer("tensor '" + t.name + "'", "duplicate tensor name");
  }

  const uint64_t a = kDefaultAlignment;
  auto pad = [a](uint64_t x) { return (a - x % a) % a; };

  std::vector<uint8_t> header;
  put_bytes(header, kMagic, 4);
  put<uint32_t>(header, 3);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, kvs_.size());
  for (const auto& kv : kvs_) {
    put_string(header, kv.key);
    put<uint32_t>(header, static_cast<uint32_t>(kv.value.type));
    put_value(header, kv.value);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put<uint64_t>(header, d);
    put<uint32_t>(header, t.ggml_type);
    put<uint64_t>(header, offset);
    offset += t.bytes.size() + pad(t.bytes.size());
  }
  header.resize(header.size() + pad(header.size()), 0);

  // Temp file in the same directory so rename() is atomic: readers see the old file or the
  // whole new one, never a prefix.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "write", "cannot create '" + tmp + "': " + std::strerror(errno));
  try {
    write_all(fd, header.data(), header.size(), path);
    const uint8_t zeros[kDefaultAlignment] = {};
    for (const auto& t : tensors_) {
      write_all(fd, t.bytes.data(), t.bytes.size(), path);
      write_all(fd, zeros, pad(t.bytes.size()), path);
    }
    if (::fsync(fd) != 0) fail(path, "write", std::string("fsync: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(path, "write", std::string("close: ") + std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(path, "write", std::string("rename: ") + std::strerror(e));
  }
}

}  // namespace resident::gguf
