#pragma once
// safetensors files (https://github.com/huggingface/safetensors):
//   8 bytes   little-endian u64 N, the header length
//   N bytes   JSON object {name: {dtype, shape, data_offsets: [begin, end]},
//                          "__metadata__": {string: string}}
//   rest      the byte buffer; offsets are relative to its start
// Reading validates everything the format requires before it allocates tensor
// storage, so a header claiming a huge tensor cannot trigger a huge allocation.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <peft/core/error.hpp>
#include <peft/core/linear_bf16.hpp>
#include <peft/core/types.hpp>
#include <peft/io/half.hpp>

namespace peft::io {

static_assert(std::endian::native == std::endian::little, "peft::io assumes a little-endian host");

/// Bytes per element of a safetensors dtype, or nullopt for an unknown name.
inline std::optional<std::size_t> dtype_size(std::string_view dtype) {
  static constexpr std::pair<std::string_view, std::size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}, {"C64", 8}};
  for (const auto& [name, size] : kSizes)
    if (name == dtype) return size;
  return std::nullopt;
}

/// One tensor of a safetensors file, as raw bytes with its dtype and shape.
struct Tensor {
  std::string dtype;                 ///< "F32", "F64", "F16", "BF16", ...
  std::vector<std::int64_t> shape;   ///< empty for a scalar
  std::vector<unsigned char> data;   ///< row-major, little-endian

  /// Number of elements: the product of shape (1 for a scalar).
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const auto extent : shape) n *= extent;
    return n;
  }

  /// A converted copy as a matrix: 2-D as is, 1-D as 1 x n, a scalar as 1 x 1,
  /// and higher ranks as shape[0] x (product of the rest).
  template <class T>
  Matrix<T> to_matrix() const {
    const Index rows = shape.size() >= 2 ? static_cast<Index>(shape[0]) : 1;
    const Index cols = rows == 0 ? 0 : static_cast<Index>(numel()) / rows;
    Matrix<T> m(rows, cols);
    convert_into(m.data(), "Tensor::to_matrix");
    return m;
  }

  /// A converted copy of all entries in row-major order.
  template <class T>
  Vector<T> to_vector() const {
    Vector<T> v(static_cast<Index>(numel()));
    convert_into(v.data(), "Tensor::to_vector");
    return v;
  }

  /// A tensor of dtype "F32" or "F64" holding `m` in row-major order, with
  /// `shape` (default: m's rows x cols) whose element count must match.
  template <class Derived>
  static Tensor from(const Eigen::DenseBase<Derived>& m, std::vector<std::int64_t> shape = {},
                     std::string dtype = "F32") {
    PEFT_REQUIRE(dtype == "F32" || dtype == "F64", "Tensor::from: dtype must be F32 or F64, got '", dtype, "'");
    Tensor t;
    t.dtype = std::move(dtype);
    // The default shape is appended, not assigned from a braced list, and each
    // dtype gets its own copy loop: the paths GCC 12 followed into a
    // -Wfree-nonheap-object false positive here (issue #26).
    if (shape.empty()) {
      t.shape.push_back(static_cast<std::int64_t>(m.rows()));
      t.shape.push_back(static_cast<std::int64_t>(m.cols()));
    } else {
      t.shape = std::move(shape);
    }
    PEFT_REQUIRE(t.numel() == static_cast<std::int64_t>(m.size()), "Tensor::from: shape holds ", t.numel(),
                 " elements but the matrix has ", m.size());
    if (t.dtype == "F32") t.data = row_major_bytes<float>(m);
    else t.data = row_major_bytes<double>(m);
    return t;
  }

 private:
  /// m's entries in row-major order as little-endian `Raw` bytes.
  template <class Raw, class Derived>
  static std::vector<unsigned char> row_major_bytes(const Eigen::DenseBase<Derived>& m) {
    std::vector<unsigned char> bytes(static_cast<std::size_t>(m.size()) * sizeof(Raw));
    unsigned char* out = bytes.data();
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j, out += sizeof(Raw)) {
        const Raw v = static_cast<Raw>(m(i, j));
        std::memcpy(out, &v, sizeof(Raw));
      }
    return bytes;
  }

  template <class T>
  void convert_into(T* out, const char* who) const {
    const auto n = static_cast<std::size_t>(numel());
    const unsigned char* in = data.data();
    auto load = [&]<class Raw>(std::size_t i) {
      Raw raw;
      std::memcpy(&raw, in + i * sizeof(Raw), sizeof(Raw));
      return raw;
    };
    PEFT_REQUIRE(dtype_size(dtype) && data.size() == n * *dtype_size(dtype), who, ": tensor of dtype '", dtype,
                 "' and ", n, " elements holds ", data.size(), " bytes");
    if (dtype == "F64") {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(load.template operator()<double>(i));
    } else if (dtype == "F32") {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(load.template operator()<float>(i));
    } else if (dtype == "F16") {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(f16_to_float(load.template operator()<std::uint16_t>(i)));
    } else if (dtype == "BF16") {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(bf16_to_float(load.template operator()<std::uint16_t>(i)));
    } else {
      detail::raise(who, ": dtype '", dtype, "' is not a floating-point type (F64, F32, F16, BF16)");
    }
  }
};

/// Tensors by name (looked up with string_view too).
using TensorMap = std::map<std::string, Tensor, std::less<>>;
/// A file's `__metadata__`: string to string.
using Metadata = std::map<std::string, std::string, std::less<>>;

/// The contents of a safetensors file: tensors by name plus `__metadata__`.
class Safetensors {
 public:
  Safetensors() = default;
  /// `source` names the file in messages.
  Safetensors(TensorMap tensors, Metadata metadata, std::string source = {})
      : tensors_(std::move(tensors)), metadata_(std::move(metadata)), source_(std::move(source)) {}

  /// The tensor called `name`; throws peft::Error if there is none.
  const Tensor& at(std::string_view name) const {
    const auto it = tensors_.find(name);
    PEFT_REQUIRE(it != tensors_.end(), "Safetensors::at: no tensor '", name, "' in '", source_, "'");
    return it->second;
  }
  bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }  ///< whether `name` is there
  std::size_t size() const { return tensors_.size(); }  ///< number of tensors
  /// Iteration over (name, Tensor) pairs in name order.
  ///@{
  auto begin() const { return tensors_.begin(); }
  auto end() const { return tensors_.end(); }
  ///@}

  const TensorMap& tensors() const { return tensors_; }    ///< every tensor, by name
  const Metadata& metadata() const { return metadata_; }  ///< the `__metadata__` strings
  /// The file it was read from (for messages).
  const std::string& source() const { return source_; }

 private:
  TensorMap tensors_;
  Metadata metadata_;
  std::string source_;
};

namespace detail {

/// The format's own cap on the header (safetensors' MAX_HEADER_SIZE).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorEntry {
  std::string name;
  Tensor tensor;  // data not yet read
  std::uint64_t begin = 0, end = 0;
};

inline std::uint64_t json_to_u64(const nlohmann::json& v, const std::string& where) {
  if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0))
    ::peft::detail::raise(where, " must be a non-negative integer, got ", v.dump());
  return v.get<std::uint64_t>();
}

/// Parses and validates the JSON header against a byte buffer of
/// `buffer_bytes`; returns the tensors sorted by offset.
inline std::vector<TensorEntry> parse_header(const nlohmann::json& header, std::uint64_t buffer_bytes,
                                             Metadata& metadata, const std::string& who) {
  using ::peft::detail::raise;
  if (!header.is_object()) raise(who, ": header must be a JSON object, got ", header.type_name());
  std::vector<TensorEntry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) raise(who, ": __metadata__ must be an object of strings, got ", info.type_name());
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string()) raise(who, ": __metadata__['", key, "'] must be a string, got ", value.dump());
        metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    const std::string where = who + ": tensor '" + name + "'";
    if (!info.is_object()) raise(where, " must be an object with dtype, shape and data_offsets, got ", info.dump());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!info.contains(field)) raise(where, " has no '", field, "'");
    TensorEntry e;
    e.name = name;
    const auto& dtype = info["dtype"];
    if (!dtype.is_string()) raise(where, ": dtype must be a string, got ", dtype.dump());
    e.tensor.dtype = dtype.get<std::string>();
    const auto element_size = dtype_size(e.tensor.dtype);
    if (!element_size) raise(where, ": unknown dtype '", e.tensor.dtype, "'");
    const auto& shape = info["shape"];
    if (!shape.is_array()) raise(where, ": shape must be an array, got ", shape.dump());
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const auto& extent : shape) {
      const std::uint64_t n = json_to_u64(extent, where + " shape entry");
      if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) overflow = true;
      if (n != 0 && numel > std::numeric_limits<std::uint64_t>::max() / n) overflow = true;
      else numel *= n;
      e.tensor.shape.push_back(static_cast<std::int64_t>(n));
    }
    const auto& offsets = info["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      raise(where, ": data_offsets must be [begin, end], got ", offsets.dump());
    e.begin = json_to_u64(offsets[0], where + " data_offsets[0]");
    e.end = json_to_u64(offsets[1], where + " data_offsets[1]");
    if (e.begin > e.end) raise(where, ": data_offsets [", e.begin, ", ", e.end, "] end before they begin");
    if (e.end > buffer_bytes)
      raise(where, ": data_offsets [", e.begin, ", ", e.end, "] run past the data buffer of ", buffer_bytes, " bytes");
    if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / *element_size ||
        numel * *element_size != e.end - e.begin)
      raise(where, ": shape ", shape.dump(), " of ", e.tensor.dtype, " needs ",
            overflow ? std::string("more than 2^64") : std::to_string(numel) + " x " + std::to_string(*element_size),
            " bytes but data_offsets span ", e.end - e.begin);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t expected = 0;
  for (const auto& e : entries) {
    if (e.begin != expected)
      raise(who, ": tensor '", e.name, "' starts at byte ", e.begin, " but the previous tensor ends at ", expected,
            e.begin < expected ? " (overlap)" : " (gap)", "; tensors must tile the data buffer");
    expected = e.end;
  }
  if (expected != buffer_bytes)
    raise(who, ": tensors cover ", expected, " bytes but the data buffer holds ", buffer_bytes);
  return entries;
}

}  // namespace detail

namespace detail {

/// The reader both entry points share: `read(offset, dst, n)` copies n bytes
/// at offset from a source of `total_bytes`, returning false if it cannot.
template <class Read>
Safetensors read_safetensors_from(const std::string& who, std::uint64_t total_bytes, Read&& read,
                                  std::string source) {
  using ::peft::detail::raise;
  if (total_bytes < 8) raise(who, ": file is ", total_bytes, " bytes, shorter than the 8-byte header length");
  unsigned char prefix[8];
  if (!read(0, prefix, 8)) raise(who, ": cannot read the header length");
  std::uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | prefix[i];
  if (header_bytes > total_bytes - 8)
    raise(who, ": header length ", header_bytes, " runs past the end of the file (", total_bytes, " bytes)");
  if (header_bytes > kMaxHeaderBytes)
    raise(who, ": header length ", header_bytes, " exceeds the format's limit of ", kMaxHeaderBytes);

  std::string header_text(static_cast<std::size_t>(header_bytes), '\0');
  if (!read(8, header_text.data(), header_bytes)) raise(who, ": file ended inside the header");
  if (header_text.empty() || header_text.front() != '{') raise(who, ": header must start with '{'");
  nlohmann::json header = nlohmann::json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) raise(who, ": header is not valid JSON");

  Metadata metadata;
  const std::uint64_t buffer_bytes = total_bytes - 8 - header_bytes;
  auto entries = parse_header(header, buffer_bytes, metadata, who);

  // Offsets are now known to tile a buffer no larger than the file.
  TensorMap tensors;
  for (auto& e : entries) {
    e.tensor.data.resize(static_cast<std::size_t>(e.end - e.begin));
    if (!read(8 + header_bytes + e.begin, e.tensor.data.data(), e.tensor.data.size()))
      raise(who, ": file ended inside tensor '", e.name, "'");
    tensors.emplace(std::move(e.name), std::move(e.tensor));
  }
  return Safetensors(std::move(tensors), std::move(metadata), std::move(source));
}

}  // namespace detail

/// Reads and validates a whole safetensors file. Every problem (missing file,
/// truncation, bad JSON, unknown dtype, offsets out of bounds, overlapping or
/// leaving gaps, shape/byte mismatch) throws peft::Error naming the file.
inline Safetensors read_safetensors(const std::filesystem::path& path) {
  using ::peft::detail::raise;
  const std::string who = "read_safetensors('" + path.string() + "')";
  std::ifstream in(path, std::ios::binary);
  if (!in) raise(who, ": cannot open the file");
  std::error_code ec;
  const std::uint64_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) raise(who, ": cannot read the file size: ", ec.message());
  auto read = [&](std::uint64_t offset, void* dst, std::uint64_t n) {
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    return static_cast<bool>(in);
  };
  return detail::read_safetensors_from(who, file_bytes, read, path.string());
}

/// The same checks over bytes already in memory (a download, a fuzzer's input).
inline Safetensors parse_safetensors(std::span<const unsigned char> bytes, const std::string& source = "<memory>") {
  const std::string who = "parse_safetensors('" + source + "')";
  auto read = [&](std::uint64_t offset, void* dst, std::uint64_t n) {
    if (offset > bytes.size() || n > bytes.size() - offset) return false;
    if (n) std::memcpy(dst, bytes.data() + offset, static_cast<std::size_t>(n));
    return true;
  };
  return detail::read_safetensors_from(who, bytes.size(), read, source);
}

/// Writes tensors (any dtype, sizes checked) and metadata as safetensors: the
/// header is compact JSON, `__metadata__` first, then tensors by decreasing
/// element size and name (the order the reference writer uses), padded with
/// spaces to a multiple of 8 bytes.
inline void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                              const Metadata& metadata = {}) {
  using ::peft::detail::raise;
  const std::string who = "write_safetensors('" + path.string() + "')";
  std::vector<const std::pair<const std::string, Tensor>*> order;
  for (const auto& entry : tensors) {
    const Tensor& t = entry.second;
    const auto size = dtype_size(t.dtype);
    if (!size) raise(who, ": tensor '", entry.first, "' has unknown dtype '", t.dtype, "'");
    for (const auto extent : t.shape)
      if (extent < 0) raise(who, ": tensor '", entry.first, "' has a negative dimension ", extent);
    if (t.data.size() != static_cast<std::size_t>(t.numel()) * *size)
      raise(who, ": tensor '", entry.first, "' of shape with ", t.numel(), " elements of ", t.dtype, " needs ",
            t.numel() * static_cast<std::int64_t>(*size), " bytes, holds ", t.data.size());
    if (entry.first == "__metadata__") raise(who, ": '__metadata__' is reserved and cannot name a tensor");
    order.push_back(&entry);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* a, const auto* b) { return *dtype_size(a->second.dtype) > *dtype_size(b->second.dtype); });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& meta = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
  }
  std::uint64_t offset = 0;
  for (const auto* entry : order) {
    const Tensor& t = entry->second;
    header[entry->first] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) raise(who, ": cannot open the file for writing");
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(prefix), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto* entry : order)
    out.write(reinterpret_cast<const char*>(entry->second.data.data()),
              static_cast<std::streamsize>(entry->second.data.size()));
  out.flush();
  if (!out) raise(who, ": writing failed");
}

/// A frozen bfloat16 layer from a file's tensors: `weight` (2-D, d_out x d_in)
/// and, unless `bias` is empty, a 1-D bias of d_out entries. A BF16 weight is
/// taken bit for bit, with no float32 copy on the way; an F32, F64 or F16 one
/// is rounded to bfloat16. Throws peft::Error naming the tensor and what was expected.
inline LinearBF16 load_linear_bf16(const Safetensors& file, std::string_view weight, std::string_view bias = {}) {
  const char* who = "load_linear_bf16";
  const Tensor& w = file.at(weight);
  PEFT_REQUIRE(w.shape.size() == 2 && w.shape[0] > 0 && w.shape[1] > 0, who, ": tensor '", weight,
               "' must be 2-D (d_out x d_in) with both sizes > 0, got ", w.shape.size(), " dimensions");
  const auto d_out = static_cast<Index>(w.shape[0]), d_in = static_cast<Index>(w.shape[1]);
  Vector<float> b;
  if (!bias.empty()) {
    const Tensor& t = file.at(bias);
    PEFT_REQUIRE(t.shape.size() == 1 && t.shape[0] == w.shape[0], who, ": bias '", bias,
                 "' must be 1-D with d_out = ", d_out, " entries");
    b = t.to_vector<float>();
  }
  if (w.dtype != "BF16") return LinearBF16(w.to_matrix<float>(), std::move(b));
  PEFT_REQUIRE(w.data.size() == static_cast<std::size_t>(d_out * d_in) * 2, who, ": tensor '", weight, "' holds ",
               w.data.size(), " bytes, expected ", d_out * d_in * 2);
  std::vector<std::uint16_t> bits(static_cast<std::size_t>(d_out * d_in));
  std::memcpy(bits.data(), w.data.data(), w.data.size());  // little-endian host, as the file
  return LinearBF16(std::move(bits), d_out, d_in, std::move(b));
}

}  // namespace peft::io
