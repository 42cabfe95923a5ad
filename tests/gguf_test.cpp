// Tests of the GGUF reader and writer (src/gguf/gguf.cpp).
//
// Files are built byte by byte with RawFile, a deliberately separate little encoder written from
// the GGUF spec, so the reader is not only checked against its own writer. Every malformation
// class starts from a base file that is first shown to load, changes one field, and must be
// rejected with an error naming that field.
#include "gguf/gguf.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_fuzz.h"
#include "quant/types.h"
#include "util/error.h"

namespace resident::gguf {
namespace gguf_test {
namespace {

namespace fs = std::filesystem;

// Fresh inputs every run; the seed is printed on failure so a failure can be replayed.
uint32_t fresh_seed() {
  static const uint32_t seed = std::random_device{}();
  return seed;
}

class Bytes {
 public:
  template <class T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b_.insert(b_.end(), p, p + sizeof v);
    return *this;
  }
  Bytes& str(std::string_view s) {
    put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& v) {
    b_.insert(b_.end(), v.begin(), v.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

struct RawKv {
  std::string key;
  uint32_t type;
  std::vector<uint8_t> payload;  // encoded value without the type tag
};

struct RawTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;
  uint64_t offset = 0;
  std::optional<uint32_t> n_dims;  // override the count written before the dims
};

struct RawFile {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count, kv_count;  // overrides
  std::vector<RawKv> kvs;
  std::vector<RawTensor> tensors;
  uint64_t alignment = 32;  // padding before the data section
  std::vector<uint8_t> data;

  std::vector<uint8_t> bytes() const {
    Bytes b;
    for (char c : magic) b.put<char>(c);
    b.put<uint32_t>(version);
    b.put<uint64_t>(tensor_count.value_or(tensors.size()));
    b.put<uint64_t>(kv_count.value_or(kvs.size()));
    for (const auto& kv : kvs) {
      b.str(kv.key).put<uint32_t>(kv.type).raw(kv.payload);
    }
    for (const auto& t : tensors) {
      b.str(t.name).put<uint32_t>(t.n_dims.value_or(static_cast<uint32_t>(t.dims.size())));
      for (uint64_t d : t.dims) b.put<uint64_t>(d);
      b.put<uint32_t>(t.type).put<uint64_t>(t.offset);
    }
    std::vector<uint8_t> out = b.bytes();
    out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
    out.insert(out.end(), data.begin(), data.end());
    return out;
  }
};

template <class T>
std::vector<uint8_t> enc(T v) {
  return Bytes().put<T>(v).bytes();
}
std::vector<uint8_t> enc_str(std::string_view s) {
  return Bytes().str(s).bytes();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "gguf_test_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

// Opens `bytes` as a file and returns the error message, or nullopt if it loaded. Also runs the
// in-memory parser used by the fuzzer and checks that both entry points agree.
std::optional<std::string> open_error(const TempDir& dir, const std::vector<uint8_t>& bytes) {
  const std::string path = dir.file("case.gguf");
  write_file(path, bytes);
  std::optional<std::string> file_error, buffer_error;
  try {
    File::open(path);
  } catch (const Error& e) {
    file_error = e.what();
  }
  try {
    detail::parse_buffer(path, bytes.data(), bytes.size());
  } catch (const Error& e) {
    buffer_error = e.what();
  }
  EXPECT_EQ(file_error, buffer_error) << "File::open and parse_buffer disagree";
  return file_error;
}

// A small valid file: one metadata entry of each common kind and three tensors of different
// block geometries, laid out back to back with alignment padding. `data` is random.
RawFile base_file(std::mt19937& rng) {
  RawFile f;
  f.kvs.push_back({"general.architecture", 8, enc_str("qwen2")});
  f.kvs.push_back({"general.name", 8, enc_str("tiny")});
  f.kvs.push_back({"qwen2.block_count", 4, enc<uint32_t>(1)});
  f.kvs.push_back({"tokenizer.ggml.tokens", 9,
                   Bytes().put<uint32_t>(8).put<uint64_t>(3).str("a").str("b").str("c").bytes()});
  // F32 [8, 2] = 64 bytes at 0; Q4_K [256, 1] = 144 bytes at 64; Q8_0 [32] = 34 bytes at 224.
  f.tensors.push_back({"a.weight", {8, 2}, 0, 0, {}});
  f.tensors.push_back({"b.weight", {256, 1}, 12, 64, {}});
  f.tensors.push_back({"c.weight", {32}, 8, 224, {}});
  f.data.resize(224 + 34);  // no trailing padding: every shorter prefix must fail
  for (auto& x : f.data) x = static_cast<uint8_t>(rng());
  return f;
}

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rng_.seed(fresh_seed());
    base_ = base_file(rng_);
  }
  // Expects the file to be rejected with an error naming `field` (and `problem` if given).
  void expect_rejected(const RawFile& f, const std::string& field,
                       const std::string& problem = "") {
    expect_rejected_bytes(f.bytes(), field, problem);
  }
  void expect_rejected_bytes(const std::vector<uint8_t>& bytes, const std::string& field,
                             const std::string& problem = "") {
    const auto err = open_error(dir_, bytes);
    ASSERT_TRUE(err.has_value()) << "accepted a file that should fail on " << field;
    EXPECT_EQ(err->rfind(dir_.file("case.gguf") + ": ", 0), 0u) << *err;
    EXPECT_NE(err->find(field), std::string::npos) << "field '" << field << "' not in: " << *err;
    EXPECT_NE(err->find(problem), std::string::npos) << "'" << problem << "' not in: " << *err;
    EXPECT_EQ(err->find('\n'), std::string::npos) << "multi-line error: " << *err;
  }

  std::mt19937 rng_;
  TempDir dir_;
  RawFile base_;
};

TEST_F(GgufTest, BaseFileLoads) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  const std::string path = dir_.file("base.gguf");
  const auto bytes = base_.bytes();
  write_file(path, bytes);
  const File f = File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.file_size(), bytes.size());
  ASSERT_EQ(f.tensors().size(), 3u);
  const TensorInfo* b = f.find_tensor("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->ggml_type, 12u);
  EXPECT_EQ(b->n_elements, 256u);
  EXPECT_EQ(b->n_bytes, 144u);
  EXPECT_EQ(b->offset, 64u);
  // The tensor's bytes are the random bytes we put there, read through the mapping.
  EXPECT_EQ(std::memcmp(b->data, base_.data.data() + 64, 144), 0);
  EXPECT_EQ(f.data_section_bytes(), 224u + 34u);
  EXPECT_EQ(f.data_section() + 64, b->data);
  EXPECT_EQ(f.total_tensor_bytes(), 64u + 144u + 34u);
  EXPECT_EQ(f.find_tensor("missing"), nullptr);
}

// Every prefix of a valid file is rejected (header, metadata, tensor table, padding, data).
TEST_F(GgufTest, EveryTruncationRejected) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  const auto full = base_.bytes();
  ASSERT_FALSE(open_error(dir_, full).has_value());
  for (size_t n = 0; n < full.size(); ++n) {
    const std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
    const auto err = open_error(dir_, prefix);
    ASSERT_TRUE(err.has_value()) << "prefix of " << n << " bytes accepted";
    EXPECT_EQ(err->find('\n'), std::string::npos) << *err;
  }
}

// Byte-flip sweep: a cheap deterministic cousin of the fuzzer, run in every test pass. A flip
// may leave a valid file (e.g. inside tensor data); what matters is no crash and a clean error.
TEST_F(GgufTest, ByteFlipsNeverCrash) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  const auto full = base_.bytes();
  size_t rejected = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    for (uint8_t v : {uint8_t{0x00}, uint8_t{0xff}, static_cast<uint8_t>(full[i] ^ 0x80)}) {
      auto mutated = full;
      mutated[i] = v;
      if (open_error(dir_, mutated).has_value()) ++rejected;
    }
  }
  // The header alone is > 200 bytes whose corruption must be caught.
  EXPECT_GT(rejected, 200u);
}

TEST_F(GgufTest, RejectsWrongMagic) {
  auto f = base_;
  f.magic = "GGUG";
  expect_rejected(f, "magic", "not a GGUF file");
  expect_rejected_bytes({}, "magic");
  expect_rejected_bytes({'G', 'G'}, "magic");
}

TEST_F(GgufTest, RejectsUnsupportedVersions) {
  auto f = base_;
  f.version = 1;
  expect_rejected(f, "version", "v1 is not supported");
  f.version = 4;
  expect_rejected(f, "version", "unsupported GGUF version 4");
  f.version = 0x03000000;  // a big-endian v3 file read little-endian
  expect_rejected(f, "version", "big-endian");
  f.version = 2;  // v2 has the same little-endian layout as v3
  EXPECT_FALSE(open_error(dir_, f.bytes()).has_value());
}

TEST_F(GgufTest, RejectsAbsurdCounts) {
  auto f = base_;
  f.tensor_count = uint64_t{1} << 40;
  expect_rejected(f, "tensor_count");
  f = base_;
  f.tensor_count = 1000;  // below the hard cap, but cannot fit in the file
  expect_rejected(f, "tensor_count", "cannot fit");
  f = base_;
  f.kv_count = std::numeric_limits<uint64_t>::max();
  expect_rejected(f, "kv_count");
  f = base_;
  f.kv_count = 100;
  expect_rejected(f, "kv_count", "cannot fit");
}

TEST_F(GgufTest, RejectsAbsurdStringLengths) {
  auto f = base_;
  f.kvs[1].payload = Bytes().put<uint64_t>(uint64_t{1} << 62).bytes();
  expect_rejected(f, "metadata 'general.name'", "past end of file");
  // A key whose length runs past the end.
  auto bytes = base_.bytes();
  std::memcpy(bytes.data() + 24, "\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  expect_rejected_bytes(bytes, "metadata key #0", "past end of file");
  // Empty key and empty tensor name.
  f = base_;
  f.kvs[0].key = "";
  expect_rejected(f, "metadata key #0", "empty key");
  f = base_;
  f.tensors[0].name = "";
  expect_rejected(f, "tensor #0 name", "empty");
}

TEST_F(GgufTest, RejectsAbsurdArrays) {
  auto f = base_;
  f.kvs[3].payload = Bytes().put<uint32_t>(8).put<uint64_t>(uint64_t{1} << 61).bytes();
  expect_rejected(f, "metadata 'tokenizer.ggml.tokens'", "array count");
  // uint8 array: count fits the file but is still absurd relative to what remains.
  f.kvs[3].payload = Bytes().put<uint32_t>(0).put<uint64_t>(100000).bytes();
  expect_rejected(f, "metadata 'tokenizer.ggml.tokens'", "array count 100000");
  // Unknown element type, unknown value type.
  f.kvs[3].payload = Bytes().put<uint32_t>(13).put<uint64_t>(0).bytes();
  expect_rejected(f, "metadata 'tokenizer.ggml.tokens'", "unknown array element type 13");
  f = base_;
  f.kvs[2].type = 99;
  expect_rejected(f, "metadata 'qwen2.block_count'", "unknown value type 99");
  // Arrays nested 9 deep.
  Bytes deep;
  for (int i = 0; i < 9; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
  deep.put<uint32_t>(0).put<uint64_t>(0);
  f = base_;
  f.kvs[3].payload = deep.bytes();
  expect_rejected(f, "metadata 'tokenizer.ggml.tokens'", "nested deeper");
}

TEST_F(GgufTest, RejectsDuplicates) {
  auto f = base_;
  f.kvs[1].key = "general.architecture";
  expect_rejected(f, "metadata 'general.architecture'", "duplicate key");
  f = base_;
  f.tensors[2].name = "a.weight";
  expect_rejected(f, "tensor 'a.weight'", "duplicate tensor name");
}

TEST_F(GgufTest, RejectsBadShapes) {
  auto f = base_;
  f.tensors[0].n_dims = 0;
  f.tensors[0].dims = {};
  expect_rejected(f, "tensor 'a.weight'", "n_dims 0");
  f = base_;
  f.tensors[0].dims = {8, 2, 1, 1, 1};
  expect_rejected(f, "tensor 'a.weight'", "n_dims 5");
  f = base_;
  f.tensors[0].dims = {8, 0};
  expect_rejected(f, "tensor 'a.weight'", "dim 1 is 0");
  f = base_;
  f.tensors[0].dims = {uint64_t{1} << 32, uint64_t{1} << 32};
  expect_rejected(f, "tensor 'a.weight'", "overflows");
  f = base_;
  // 2^62 F32 elements fit int64 but their byte count (x4) does not fit uint64.
  f.tensors[0].dims = {uint64_t{1} << 31, uint64_t{1} << 31};
  expect_rejected(f, "tensor 'a.weight'", "overflows");
  f = base_;
  f.tensors[1].dims = {100, 1};  // Q4_K rows are whole blocks of 256
  expect_rejected(f, "tensor 'b.weight'", "row length 100 is not a multiple");
}

TEST_F(GgufTest, RejectsUnsupportedTypes) {
  auto f = base_;
  f.tensors[1].type = 16;  // IQ2_XXS: known to ggml, not to us
  expect_rejected(f, "tensor 'b.weight'", "type 16");
  f.tensors[1].type = 0xdeadbeef;
  expect_rejected(f, "tensor 'b.weight'", "type 3735928559");
}

TEST_F(GgufTest, RejectsBadOffsets) {
  auto f = base_;
  f.tensors[2].offset = 256;  // 256 + 34 > 258 bytes of data
  expect_rejected(f, "tensor 'c.weight'", "past end of file");
  f.tensors[2].offset = std::numeric_limits<uint64_t>::max() - 31;  // aligned; offset+bytes wraps
  expect_rejected(f, "tensor 'c.weight'", "past end of file");
  f = base_;
  f.tensors[2].offset = 225;
  expect_rejected(f, "tensor 'c.weight'", "not a multiple of the alignment 32");
  f = base_;
  f.tensors[1].offset = 32;  // [32, 176) overlaps a.weight [0, 64)
  expect_rejected(f, "tensor 'b.weight'", "overlaps tensor 'a.weight'");
  f = base_;
  f.data.resize(10);  // data section shorter than the first tensor
  expect_rejected(f, "tensor 'a.weight'", "past end of file");
}

TEST_F(GgufTest, AlignmentKey) {
  const auto with_alignment = [&](uint32_t type, std::vector<uint8_t> payload) {
    auto f = base_;
    f.kvs.push_back({"general.alignment", type, std::move(payload)});
    return f;
  };
  for (uint32_t bad : {0u, 3u, 48u}) {
    expect_rejected(with_alignment(4, enc<uint32_t>(bad)), "general.alignment", "power of two");
  }
  expect_rejected(with_alignment(4, enc<uint32_t>(4)), "general.alignment", "outside");
  expect_rejected(with_alignment(4, enc<uint32_t>(1u << 20)), "general.alignment", "outside");
  expect_rejected(with_alignment(6, enc<float>(32.0f)), "general.alignment", "expected");
  // A valid non-default alignment moves the data section and constrains the offsets.
  auto f = with_alignment(4, enc<uint32_t>(64));
  f.alignment = 64;
  f.tensors[1].offset = 64;
  f.tensors[2].offset = 256;
  f.data.resize(256 + 34);
  const std::string path = dir_.file("a64.gguf");
  write_file(path, f.bytes());
  const File file = File::open(path);
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(file.data_section()) % 64, 0u);
  f.tensors[2].offset = 224;  // fine for 32, not for 64
  expect_rejected(f, "tensor 'c.weight'", "alignment 64");
}

TEST_F(GgufTest, MissingAndUnreadableFiles) {
  try {
    File::open(dir_.file("does-not-exist.gguf"));
    FAIL() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist.gguf: open:"), std::string::npos)
        << e.what();
  }
  try {
    File::open(dir_.path().string());
    FAIL() << "opened a directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

// A hostile key with a newline must not break the one-line error format.
TEST_F(GgufTest, ErrorsEscapeNames) {
  auto f = base_;
  f.kvs[1].key = "evil\nkey";
  f.kvs[1].payload = Bytes().put<uint64_t>(uint64_t{1} << 40).bytes();
  expect_rejected(f, "metadata 'evil\\x0akey'", "past end of file");
}

// ---------------------------------------------------------------------------------------------
// Round trips

Value scalar_u(ValueType t, uint64_t u) {
  Value v;
  v.type = t;
  v.u = u;
  return v;
}
Value scalar_i(ValueType t, int64_t i) {
  Value v;
  v.type = t;
  v.i = i;
  return v;
}
Value scalar_f(ValueType t, double f) {
  Value v;
  v.type = t;
  v.f = f;
  return v;
}
Value string_value(std::string s) {
  Value v;
  v.type = ValueType::STRING;
  v.s = std::move(s);
  return v;
}
Value array_value(ValueType elem, std::vector<Value> items) {
  Value v;
  v.type = ValueType::ARRAY;
  v.elem_type = elem;
  v.array = std::move(items);
  return v;
}

// Independent encoder (spec order, little-endian), used to build the input of the round trip.
void encode(Bytes& b, const Value& v) {
  switch (v.type) {
    case ValueType::UINT8:
      b.put<uint8_t>(static_cast<uint8_t>(v.u));
      break;
    case ValueType::INT8:
      b.put<int8_t>(static_cast<int8_t>(v.i));
      break;
    case ValueType::UINT16:
      b.put<uint16_t>(static_cast<uint16_t>(v.u));
      break;
    case ValueType::INT16:
      b.put<int16_t>(static_cast<int16_t>(v.i));
      break;
    case ValueType::UINT32:
      b.put<uint32_t>(static_cast<uint32_t>(v.u));
      break;
    case ValueType::INT32:
      b.put<int32_t>(static_cast<int32_t>(v.i));
      break;
    case ValueType::FLOAT32:
      b.put<float>(static_cast<float>(v.f));
      break;
    case ValueType::BOOL:
      b.put<uint8_t>(static_cast<uint8_t>(v.u));
      break;
    case ValueType::STRING:
      b.str(v.s);
      break;
    case ValueType::ARRAY:
      b.put<uint32_t>(static_cast<uint32_t>(v.elem_type)).put<uint64_t>(v.array.size());
      for (const auto& e : v.array) encode(b, e);
      break;
    case ValueType::UINT64:
      b.put<uint64_t>(v.u);
      break;
    case ValueType::INT64:
      b.put<int64_t>(v.i);
      break;
    case ValueType::FLOAT64:
      b.put<double>(v.f);
      break;
  }
}

void expect_same(const Value& want, const Value& got, const std::string& where) {
  ASSERT_EQ(want.type, got.type) << where;
  switch (want.type) {
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      // Exact: values are stored bit for bit (float32 values were drawn as floats).
      EXPECT_EQ(want.f, got.f) << where;
      break;
    case ValueType::STRING:
      EXPECT_EQ(want.s, got.s) << where;
      break;
    case ValueType::ARRAY:
      ASSERT_EQ(want.elem_type, got.elem_type) << where;
      ASSERT_EQ(want.array.size(), got.array.size()) << where;
      for (size_t i = 0; i < want.array.size(); ++i) {
        expect_same(want.array[i], got.array[i], where + "[" + std::to_string(i) + "]");
      }
      break;
    case ValueType::INT8:
    case ValueType::INT16:
    case ValueType::INT32:
    case ValueType::INT64:
      EXPECT_EQ(want.i, got.i) << where;
      break;
    default:
      EXPECT_EQ(want.u, got.u) << where;
      break;
  }
}

std::string random_string(std::mt19937& rng, size_t max_len) {
  std::string s(rng() % (max_len + 1), '\0');
  for (char& c : s) c = static_cast<char>(rng());  // any bytes, NUL and invalid UTF-8 included
  return s;
}

Value random_scalar(std::mt19937& rng, ValueType t) {
  std::mt19937_64 r64(rng());
  const uint64_t bits = r64();
  switch (t) {
    case ValueType::UINT8:
      return scalar_u(t, bits & 0xff);
    case ValueType::INT8:
      return scalar_i(t, static_cast<int8_t>(bits));
    case ValueType::UINT16:
      return scalar_u(t, bits & 0xffff);
    case ValueType::INT16:
      return scalar_i(t, static_cast<int16_t>(bits));
    case ValueType::UINT32:
      return scalar_u(t, bits & 0xffffffffu);
    case ValueType::INT32:
      return scalar_i(t, static_cast<int32_t>(bits));
    case ValueType::UINT64:
      return scalar_u(t, bits);
    case ValueType::INT64:
      return scalar_i(t, static_cast<int64_t>(bits));
    case ValueType::FLOAT32:
      return scalar_f(t, std::normal_distribution<float>(0.0f, 1e3f)(rng));
    case ValueType::FLOAT64:
      return scalar_f(t, std::normal_distribution<double>(0.0, 1e9)(rng));
    case ValueType::BOOL:
      return scalar_u(t, bits & 1);
    case ValueType::STRING:
      return string_value(random_string(rng, 40));
    case ValueType::ARRAY:
      break;
  }
  return {};
}

TEST_F(GgufTest, RoundTripEveryValueType) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  const ValueType scalars[] = {ValueType::UINT8,   ValueType::INT8,   ValueType::UINT16,
                               ValueType::INT16,   ValueType::UINT32, ValueType::INT32,
                               ValueType::FLOAT32, ValueType::BOOL,   ValueType::STRING,
                               ValueType::UINT64,  ValueType::INT64,  ValueType::FLOAT64};
  std::vector<std::pair<std::string, Value>> want;
  for (ValueType t : scalars) {
    const std::string name(value_type_name(t));
    want.emplace_back("scalar." + name, random_scalar(rng_, t));
    std::vector<Value> items(rng_() % 50);
    for (auto& e : items) e = random_scalar(rng_, t);
    want.emplace_back("array." + name, array_value(t, std::move(items)));
  }
  want.emplace_back("array.empty", array_value(ValueType::INT32, {}));
  // Nested: array of arrays of uint8, of strings, and three levels deep.
  std::vector<Value> rows;
  for (int r = 0; r < 5; ++r) {
    std::vector<Value> row(rng_() % 6);
    for (auto& e : row) e = random_scalar(rng_, ValueType::UINT8);
    rows.push_back(array_value(ValueType::UINT8, std::move(row)));
  }
  want.emplace_back("nested.uint8", array_value(ValueType::ARRAY, std::move(rows)));
  std::vector<Value> srows;
  for (int r = 0; r < 3; ++r) {
    srows.push_back(array_value(ValueType::STRING, {random_scalar(rng_, ValueType::STRING),
                                                    random_scalar(rng_, ValueType::STRING)}));
  }
  want.emplace_back("nested.string", array_value(ValueType::ARRAY, std::move(srows)));
  Value deep = array_value(ValueType::FLOAT64, {random_scalar(rng_, ValueType::FLOAT64)});
  for (int d = 0; d < 7; ++d) deep = array_value(ValueType::ARRAY, {deep, deep});
  want.emplace_back("nested.deep", deep);  // 8 levels: the limit

  RawFile f;
  f.version = (rng_() & 1) ? 3 : 2;
  for (const auto& [key, v] : want) {
    Bytes payload;
    encode(payload, v);
    f.kvs.push_back({key, static_cast<uint32_t>(v.type), payload.bytes()});
  }
  const std::string path = dir_.file("values.gguf");
  write_file(path, f.bytes());
  const File file = File::open(path);
  ASSERT_EQ(file.metadata().size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(file.metadata()[k].first, want[k].first);  // order preserved
    const Value* got = file.find(want[k].first);
    ASSERT_NE(got, nullptr) << want[k].first;
    expect_same(want[k].second, *got, want[k].first);
  }
  EXPECT_TRUE(file.tensors().empty());
}

TEST_F(GgufTest, TypedGetters) {
  RawFile f;
  f.kvs.push_back({"u8", 0, enc<uint8_t>(200)});
  f.kvs.push_back({"i32.pos", 5, enc<int32_t>(7)});
  f.kvs.push_back({"i32.neg", 5, enc<int32_t>(-7)});
  f.kvs.push_back({"f32", 6, enc<float>(0.5f)});
  f.kvs.push_back({"b", 7, enc<uint8_t>(1)});
  f.kvs.push_back({"s", 8, enc_str("hello")});
  f.kvs.push_back({"arr", 9, Bytes().put<uint32_t>(8).put<uint64_t>(1).str("x").bytes()});
  const std::string path = dir_.file("getters.gguf");
  write_file(path, f.bytes());
  const File file = File::open(path);
  EXPECT_EQ(file.get_uint("u8"), 200u);
  EXPECT_EQ(file.get_uint("i32.pos"), 7u);
  EXPECT_EQ(file.get_float("f32"), 0.5);
  EXPECT_EQ(file.get_float("u8"), 200.0);  // integers widen to float
  EXPECT_TRUE(file.get_bool("b"));
  EXPECT_EQ(file.get_string("s"), "hello");
  EXPECT_EQ(file.find_uint("nope"), std::nullopt);
  EXPECT_EQ(file.find_string("nope"), std::nullopt);
  EXPECT_EQ(file.find_float("nope"), std::nullopt);
  EXPECT_EQ(file.find_bool("nope"), std::nullopt);
  EXPECT_EQ(file.find_array("nope"), nullptr);
  ASSERT_NE(file.find_array("arr"), nullptr);
  EXPECT_EQ(file.find_array("arr")->at(0).s, "x");
  const auto expect_error = [&](auto&& call, const std::string& want) {
    try {
      call();
      ADD_FAILURE() << "no error, expected: " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    }
  };
  expect_error([&] { file.get_uint("nope"); }, "nope: missing");
  expect_error([&] { file.get_uint("i32.neg"); }, "i32.neg: expected an unsigned integer");
  expect_error([&] { file.get_uint("s"); }, "s: expected an unsigned integer, found string");
  expect_error([&] { file.get_string("u8"); }, "u8: expected string, found uint8");
  expect_error([&] { file.get_bool("s"); }, "s: expected bool");
  expect_error([&] { file.get_float("s"); }, "s: expected float32");
  expect_error([&] { file.find_string("u8"); }, "u8: expected string");
  expect_error([&] { file.find_array("s"); }, "s: expected array, found string");
}

std::vector<uint8_t> random_bytes(std::mt19937& rng, size_t n) {
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

TEST_F(GgufTest, WriterRoundTrip) {
  SCOPED_TRACE("seed " + std::to_string(fresh_seed()));
  Writer w;
  const uint32_t u32 = rng_();
  const int32_t i32 = static_cast<int32_t>(rng_());
  const uint64_t u64 = (uint64_t{rng_()} << 32) | rng_();
  const float f32 = std::normal_distribution<float>(0.0f, 10.0f)(rng_);
  std::vector<std::string> strings(1 + rng_() % 20);
  for (auto& s : strings) s = random_string(rng_, 12);
  std::vector<int32_t> ints(rng_() % 30);
  for (auto& x : ints) x = static_cast<int32_t>(rng_());
  std::vector<float> floats(rng_() % 30);
  for (auto& x : floats) x = std::normal_distribution<float>()(rng_);
  w.add_string("general.architecture", "qwen2");
  w.add_uint32("k.u32", u32);
  w.add_int32("k.i32", i32);
  w.add_uint64("k.u64", u64);
  w.add_float32("k.f32", f32);
  w.add_bool("k.bool", true);
  w.add_string_array("k.strings", strings);
  w.add_int32_array("k.ints", ints);
  w.add_float32_array("k.floats", floats);
  struct T {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> bytes;
  };
  // Sizes not multiples of 32 check the padding between tensors.
  const std::vector<T> tensors = {
      {"t.f32", 0, {3, 5}, random_bytes(rng_, 60)},
      {"t.f16", 1, {7}, random_bytes(rng_, 14)},
      {"t.q4k", 12, {256, 2}, random_bytes(rng_, 288)},
      {"t.q6k", 14, {512}, random_bytes(rng_, 420)},
      {"t.q80", 8, {32, 1, 2, 1}, random_bytes(rng_, 68)},
  };
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.dims, t.bytes);
  const std::string path = dir_.file("writer.gguf");
  w.write(path);
  // The temp file was renamed away.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator{}), 1);

  const File f = File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f.get_uint("k.u32"), u32);
  EXPECT_EQ(f.find("k.i32")->i, i32);
  EXPECT_EQ(f.get_uint("k.u64"), u64);
  EXPECT_EQ(f.get_float("k.f32"), static_cast<double>(f32));
  EXPECT_TRUE(f.get_bool("k.bool"));
  const auto* s = f.find_array("k.strings");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->size(), strings.size());
  for (size_t i = 0; i < strings.size(); ++i) EXPECT_EQ((*s)[i].s, strings[i]);
  const auto* in = f.find_array("k.ints");
  ASSERT_EQ(in->size(), ints.size());
  for (size_t i = 0; i < ints.size(); ++i) EXPECT_EQ((*in)[i].i, ints[i]);
  const auto* fl = f.find_array("k.floats");
  ASSERT_EQ(fl->size(), floats.size());
  for (size_t i = 0; i < floats.size(); ++i) EXPECT_EQ((*fl)[i].f, static_cast<double>(floats[i]));
  ASSERT_EQ(f.tensors().size(), tensors.size());
  uint64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& got = f.tensors()[i];
    EXPECT_EQ(got.name, tensors[i].name);
    EXPECT_EQ(got.ggml_type, tensors[i].type);
    EXPECT_EQ(got.dims, tensors[i].dims);
    EXPECT_EQ(got.offset % 32, 0u);
    ASSERT_EQ(got.n_bytes, tensors[i].bytes.size());
    EXPECT_EQ(std::memcmp(got.data, tensors[i].bytes.data(), got.n_bytes), 0) << got.name;
    total += got.n_bytes;
  }
  EXPECT_EQ(f.total_tensor_bytes(), total);

  // Overwriting an existing file replaces it whole.
  Writer w2;
  w2.add_string("general.architecture", "llama");
  w2.write(path);
  const File f2 = File::open(path);
  EXPECT_EQ(f2.get_string("general.architecture"), "llama");
  EXPECT_TRUE(f2.tensors().empty());
}

TEST_F(GgufTest, WriterErrors) {
  const auto expect_error = [](auto&& call, const std::string& want) {
    try {
      call();
      ADD_FAILURE() << "no error, expected: " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  const std::string unwritable = dir_.file("no-such-dir/out.gguf");
  expect_error([&] { Writer().write(unwritable); }, unwritable + ": write: cannot create");
  expect_error([&] { Writer().add_tensor("w", 12, {256}, std::vector<uint8_t>(143)); },
               "tensor 'w': 143 bytes given, type Q4_K needs 144");
  expect_error([&] { Writer().add_tensor("w", 12, {100}, std::vector<uint8_t>(144)); },
               "row length 100");
  expect_error([&] { Writer().add_tensor("w", 16, {256}, std::vector<uint8_t>(66)); }, "type 16");
  expect_error([&] { Writer().add_tensor("w", 0, {}, {}); }, "n_dims 0");
  expect_error([&] { Writer().add_uint32("general.alignment", 64); }, "general.alignment");
  expect_error(
      [&] {
        Writer w;
        w.add_uint32("a", 1);
        w.add_uint32("a", 2);
        w.write(dir_.file("dup.gguf"));
      },
      "duplicate key");
  expect_error(
      [&] {
        Writer w;
        w.add_tensor("t", 0, {1}, std::vector<uint8_t>(4));
        w.add_tensor("t", 0, {1}, std::vector<uint8_t>(4));
        w.write(dir_.file("dup.gguf"));
      },
      "duplicate tensor name");
  EXPECT_FALSE(fs::exists(dir_.file("dup.gguf")));
}

// The writer's output read by an independent reader: the `gguf` Python package.
TEST_F(GgufTest, WriterOutputReadByPythonGguf) {
  if (std::system("python3 -c 'import gguf' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 with the gguf package is not available";
  }
  Writer w;
  w.add_string("general.architecture", "qwen2");
  w.add_uint32("qwen2.block_count", 3);
  w.add_float32("qwen2.rope.freq_base", 1e6f);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "bc", "\n"});
  w.add_int32_array("tokenizer.ggml.token_type", {1, 2, -3});
  std::vector<uint8_t> f32(4 * 256);
  for (size_t i = 0; i < 256; ++i) {
    const float x = static_cast<float>(i) * 0.25f - 3.0f;
    std::memcpy(f32.data() + 4 * i, &x, 4);
  }
  w.add_tensor("x.weight", 0, {64, 4}, f32);
  w.add_tensor("y.weight", 14, {256}, random_bytes(rng_, 210));
  const std::string path = dir_.file("py.gguf");
  w.write(path);
  const std::string script = dir_.file("check.py");
  std::ofstream(script) << R"(import sys, numpy as np, gguf
r = gguf.GGUFReader(sys.argv[1])
f = r.fields
assert bytes(f['general.architecture'].parts[-1]).decode() == 'qwen2'
assert int(f['qwen2.block_count'].parts[-1][0]) == 3
assert float(f['qwen2.rope.freq_base'].parts[-1][0]) == 1e6
toks = [bytes(f['tokenizer.ggml.tokens'].parts[i]).decode() for i in f['tokenizer.ggml.tokens'].data]
assert toks == ['a', 'bc', '\n'], toks
tt = [int(f['tokenizer.ggml.token_type'].parts[i][0]) for i in f['tokenizer.ggml.token_type'].data]
assert tt == [1, 2, -3], tt
t = {x.name: x for x in r.tensors}
x = t['x.weight']
assert list(x.shape) == [64, 4] and x.tensor_type == 0
assert np.array_equal(np.asarray(x.data).reshape(-1), np.arange(256, dtype=np.float32) * 0.25 - 3)
assert t['y.weight'].tensor_type == 14 and t['y.weight'].n_bytes == 210
print('ok')
)";
  const std::string cmd = "python3 " + script + " " + path;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "the gguf package rejected or misread " << path;
}

// The real model: the header (with ~450k tokenizer entries) must load well under a second.
TEST(GgufRealModel, LoadsQuickly) {
  const char* env = std::getenv("RESIDENT_MODEL");
  const std::string path = env ? env
                               : std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") +
                                     "/.cache/resident/qwen2.5-coder-1.5b-q4_k_m.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "model not found at " << path << " (set RESIDENT_MODEL)";
  const auto t0 = std::chrono::steady_clock::now();
  const File f = File::open(path);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 1.0);
  EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f.get_uint("qwen2.block_count"), 28u);
  EXPECT_EQ(f.get_uint("qwen2.embedding_length"), 1536u);
  EXPECT_EQ(f.get_uint("qwen2.attention.head_count_kv"), 2u);
  EXPECT_EQ(f.get_float("qwen2.rope.freq_base"), 1e6);
  ASSERT_NE(f.find_array("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(f.find_array("tokenizer.ggml.tokens")->size(), 151936u);
  EXPECT_EQ(f.find_array("tokenizer.ggml.merges")->size(), 151387u);
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->elem_type, ValueType::INT32);
  EXPECT_EQ(f.tensors().size(), 339u);
  // Tensors fill the data section exactly up to the padding after the last one.
  EXPECT_LE(f.total_tensor_bytes(), f.data_section_bytes());
  EXPECT_GE(f.total_tensor_bytes() + 32 * f.tensors().size(), f.data_section_bytes());
  EXPECT_EQ(f.data_section() + f.data_section_bytes() - f.find_tensor("output_norm.weight")->data,
            static_cast<ptrdiff_t>(f.find_tensor("output_norm.weight")->n_bytes));
}

}  // namespace
}  // namespace gguf_test
}  // namespace resident::gguf
