#pragma once
// llama.cpp's GGUF files (version 3): LoRA adapters written so that
// llama_adapter_lora_init() applies them to a GGUF model, and a checked
// reader for any GGUF file's metadata and F32/F16/BF16/F64 tensors.
//
// A LoRA adapter file holds general.type = "adapter", general.architecture
// (the model's, e.g. "llama"), adapter.type = "lora", adapter.lora.alpha, and
// per adapted weight "<gguf tensor>.lora_a" (r x d_in) and ".lora_b"
// (d_out x r), e.g. "blk.0.attn_q.weight.lora_a". llama.cpp scales every
// module by alpha / r_module (r from lora_b's shape), so a module whose own
// scaling differs (rsLoRA, alpha_pattern) gets that ratio folded into its
// lora_b: the file's ΔW is exactly ours. llama.cpp's converter permutes the
// rows of LLaMA's q and k weights (rotary layout); llama_tensors() gives
// lora_b the same permutation.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <peft/adapters/lora.hpp>
#include <peft/core/error.hpp>
#include <peft/io/half.hpp>
#include <peft/io/peft_dir.hpp>

namespace peft::io {

static_assert(std::endian::native == std::endian::little, "peft::io GGUF support assumes a little-endian host");

/// GGUF metadata value types, as numbered in the file.
enum class GgufType : std::uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};

/// ggml tensor types this reader converts (others are listed, not converted).
///@{
inline constexpr std::uint32_t kGgmlF32 = 0;   ///< float32
inline constexpr std::uint32_t kGgmlF16 = 1;   ///< IEEE float16
inline constexpr std::uint32_t kGgmlF64 = 28;  ///< float64
inline constexpr std::uint32_t kGgmlBF16 = 30; ///< bfloat16
///@}

/// One metadata entry: its key, its type (Array: the elements' type in
/// `element_type`) and its value as JSON (numbers, strings, bools, arrays).
struct GgufEntry {
  std::string key;                        ///< e.g. "general.architecture"
  GgufType type = GgufType::String;       ///< the value's type in the file
  GgufType element_type = GgufType::UInt8;  ///< for an Array: its elements' type
  nlohmann::json value;                   ///< the value
};

/// One tensor's description: name, shape in PyTorch/numpy order (the file's
/// ggml order reversed), ggml type, and where its bytes lie.
struct GgufTensorInfo {
  std::string name;                 ///< e.g. "blk.0.attn_q.weight.lora_a"
  std::vector<std::int64_t> shape;  ///< numpy order: {rows, cols} for a matrix
  std::uint32_t ggml_type = 0;      ///< kGgmlF32, kGgmlF16, ... (quantised types too)
  std::uint64_t offset = 0;         ///< from the start of the data section
  std::uint64_t bytes = 0;          ///< 0 for a type this reader does not size
};

/// A parsed GGUF file: version, metadata, tensors and the data section.
class Gguf {
 public:
  std::uint32_t version = 0;             ///< 2 or 3
  std::vector<GgufEntry> metadata;       ///< in file order
  std::vector<GgufTensorInfo> tensors;   ///< in file order
  std::vector<unsigned char> data;       ///< the data section (aligned as in the file)
  std::string source;                    ///< the file, for messages

  /// The entry called `key`, or nullptr.
  const GgufEntry* find(std::string_view key) const {
    for (const auto& e : metadata)
      if (e.key == key) return &e;
    return nullptr;
  }
  /// The tensor called `name`, or nullptr.
  const GgufTensorInfo* tensor(std::string_view name) const {
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  /// A 1-D or 2-D F32/F16/BF16/F64 tensor as a rows x cols matrix (1-D: 1 x n).
  template <class T>
  Matrix<T> to_matrix(const GgufTensorInfo& t) const {
    const std::string who = "Gguf::to_matrix('" + source + "', '" + t.name + "')";
    PEFT_REQUIRE(t.shape.size() == 1 || t.shape.size() == 2, who, ": expected a 1-D or 2-D tensor, got ",
                 t.shape.size(), " dimensions");
    PEFT_REQUIRE(t.bytes != 0, who, ": ggml type ", t.ggml_type, " is not F32, F16, BF16 or F64");
    const Index rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
    Matrix<T> m(rows, cols);
    const unsigned char* p = data.data() + t.offset;
    for (Index i = 0; i < m.size(); ++i) {
      const auto k = static_cast<std::size_t>(i);
      double v = 0;
      if (t.ggml_type == kGgmlF32) v = load<float>(p + 4 * k);
      else if (t.ggml_type == kGgmlF64) v = load<double>(p + 8 * k);
      else if (t.ggml_type == kGgmlF16) v = f16_to_float(load<std::uint16_t>(p + 2 * k));
      else v = bf16_to_float(load<std::uint16_t>(p + 2 * k));
      m.data()[i] = static_cast<T>(v);
    }
    return m;
  }

 private:
  template <class V>
  static V load(const unsigned char* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
};

namespace detail {

/// Bytes per element of the ggml types this reader converts; 0 for others.
inline std::uint64_t ggml_type_size(std::uint32_t type) {
  switch (type) {
    case kGgmlF32: return 4;
    case kGgmlF16: return 2;
    case kGgmlBF16: return 2;
    case kGgmlF64: return 8;
    default: return 0;
  }
}

/// Bounds-checked little-endian reads over the file's bytes.
class GgufCursor {
 public:
  GgufCursor(const std::vector<unsigned char>& bytes, const std::string& who) : bytes_(bytes), who_(who) {}

  template <class V>
  V scalar(const char* what) {
    need(sizeof(V), what);
    V v;
    std::memcpy(&v, bytes_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  std::string string(const char* what) {
    const auto n = scalar<std::uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + at_), static_cast<std::size_t>(n));
    at_ += static_cast<std::size_t>(n);
    return s;
  }
  /// A count of items of at least `min_item_bytes` each: refused if the rest
  /// of the file could not hold them (so no huge allocation from a bad count).
  std::uint64_t count(std::uint64_t min_item_bytes, const char* what) {
    const auto n = scalar<std::uint64_t>(what);
    if (min_item_bytes && n > remaining() / min_item_bytes)
      ::peft::detail::raise(who_, ": ", what, " ", n, " cannot fit in the ", remaining(), " bytes left");
    return n;
  }
  std::size_t position() const { return at_; }
  std::uint64_t remaining() const { return bytes_.size() - at_; }

 private:
  void need(std::uint64_t n, const char* what) const {
    if (n > remaining())
      ::peft::detail::raise(who_, ": the file ends inside ", what, " (", n, " bytes needed, ", remaining(), " left)");
  }
  const std::vector<unsigned char>& bytes_;
  const std::string& who_;
  std::size_t at_ = 0;
};

inline nlohmann::json read_gguf_value(GgufCursor& in, GgufType type, int depth, GgufType* element_type,
                                      const std::string& who) {
  switch (type) {
    case GgufType::UInt8: return in.scalar<std::uint8_t>("a value");
    case GgufType::Int8: return in.scalar<std::int8_t>("a value");
    case GgufType::UInt16: return in.scalar<std::uint16_t>("a value");
    case GgufType::Int16: return in.scalar<std::int16_t>("a value");
    case GgufType::UInt32: return in.scalar<std::uint32_t>("a value");
    case GgufType::Int32: return in.scalar<std::int32_t>("a value");
    case GgufType::Float32: return in.scalar<float>("a value");
    case GgufType::Bool: {
      const auto b = in.scalar<std::uint8_t>("a value");
      if (b > 1) ::peft::detail::raise(who, ": a bool holds ", int{b}, ", expected 0 or 1");
      return b == 1;
    }
    case GgufType::String:  // kept as bytes: dump with error_handler_t::replace if not UTF-8
      return in.string("a string");
    case GgufType::UInt64: return in.scalar<std::uint64_t>("a value");
    case GgufType::Int64: return in.scalar<std::int64_t>("a value");
    case GgufType::Float64: return in.scalar<double>("a value");
    case GgufType::Array: {
      if (depth >= 2) ::peft::detail::raise(who, ": arrays nested deeper than 2 levels");
      const auto inner = static_cast<GgufType>(in.scalar<std::uint32_t>("an array's type"));
      if (element_type) *element_type = inner;
      const auto n = in.count(1, "an array's length");
      nlohmann::json a = nlohmann::json::array();
      for (std::uint64_t i = 0; i < n; ++i) a.push_back(read_gguf_value(in, inner, depth + 1, nullptr, who));
      return a;
    }
  }
  ::peft::detail::raise(who, ": unknown metadata value type ", static_cast<std::uint32_t>(type));
}

}  // namespace detail

/// Parses a whole GGUF file held in memory; `source` names it in messages.
/// Throws peft::Error for anything malformed (bad magic or version, counts or
/// strings running past the end, tensors outside the data section, overlapping
/// or misaligned offsets, more than 4 dimensions, unknown value types).
inline Gguf parse_gguf(std::vector<unsigned char> bytes, const std::string& source) {
  using ::peft::detail::raise;
  const std::string who = "read_gguf('" + source + "')";
  detail::GgufCursor in(bytes, who);
  Gguf g;
  g.source = source;
  if (in.scalar<std::uint32_t>("the magic") != 0x46554747u) raise(who, ": not a GGUF file (no 'GGUF' magic)");
  g.version = in.scalar<std::uint32_t>("the version");
  if (g.version != 2 && g.version != 3) raise(who, ": GGUF version ", g.version, ", expected 2 or 3");
  // An entry takes >= 12 bytes (key length, type, value); a tensor info >= 24.
  const auto n_tensors = [&] {
    const auto n = in.scalar<std::uint64_t>("the tensor count");
    if (n > in.remaining() / 24) raise(who, ": tensor count ", n, " cannot fit in the file");
    return n;
  }();
  const auto n_entries = in.count(12, "the metadata count");
  std::uint64_t alignment = 32;
  for (std::uint64_t i = 0; i < n_entries; ++i) {
    GgufEntry e;
    e.key = in.string("a metadata key");
    e.type = static_cast<GgufType>(in.scalar<std::uint32_t>("a value type"));
    e.value = detail::read_gguf_value(in, e.type, 0, &e.element_type, who);
    if (e.key == "general.alignment") {
      if (e.type != GgufType::UInt32 || e.value.get<std::uint32_t>() == 0 ||
          !std::has_single_bit(e.value.get<std::uint32_t>()))
        raise(who, ": general.alignment must be a uint32 power of two, got ", e.value.dump());
      alignment = e.value.get<std::uint32_t>();
    }
    g.metadata.push_back(std::move(e));
  }
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = in.string("a tensor name");
    const auto dims = in.scalar<std::uint32_t>("a tensor's dimension count");
    if (dims == 0 || dims > 4) raise(who, ": tensor '", t.name, "' has ", dims, " dimensions, expected 1 to 4");
    std::uint64_t elements = 1;
    std::vector<std::int64_t> ne;
    for (std::uint32_t d = 0; d < dims; ++d) {
      const auto extent = in.scalar<std::uint64_t>("a tensor's shape");
      if (extent == 0 || extent > (std::uint64_t{1} << 40) || elements > (std::uint64_t{1} << 48) / extent)
        raise(who, ": tensor '", t.name, "' has a dimension of ", extent, " (or too many elements)");
      elements *= extent;
      ne.push_back(static_cast<std::int64_t>(extent));
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    t.ggml_type = in.scalar<std::uint32_t>("a tensor's type");
    t.offset = in.scalar<std::uint64_t>("a tensor's offset");
    if (t.offset % alignment != 0) raise(who, ": tensor '", t.name, "' starts at ", t.offset, ", not a multiple of ", alignment);
    t.bytes = elements * detail::ggml_type_size(t.ggml_type);
    g.tensors.push_back(std::move(t));
  }
  const std::uint64_t start = (in.position() + alignment - 1) / alignment * alignment;
  if (start > bytes.size()) raise(who, ": the file ends before its data section");
  g.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(start), bytes.end());
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  for (const auto& t : g.tensors) {
    if (t.offset > g.data.size() || t.bytes > g.data.size() - t.offset)
      raise(who, ": tensor '", t.name, "' (", t.bytes, " bytes at ", t.offset, ") lies outside the ", g.data.size(),
            "-byte data section");
    if (t.bytes) spans.emplace_back(t.offset, t.offset + t.bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (std::size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) raise(who, ": two tensors overlap in the data section");
  return g;
}

/// Reads and parses a GGUF file (see parse_gguf).
inline Gguf read_gguf(const std::filesystem::path& path) {
  const std::string who = "read_gguf('" + path.string() + "')";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) ::peft::detail::raise(who, ": no such file");
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.eof() && in.fail()) ::peft::detail::raise(who, ": cannot read the file");
  return parse_gguf(std::move(bytes), path.string());
}

/// The GGUF tensor name llama.cpp gives a Hugging Face LLaMA-family module
/// (model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj,
/// lm_head): e.g. "model.layers.3.self_attn.q_proj" -> "blk.3.attn_q.weight".
/// Throws peft::Error for a module llama.cpp's LLaMA graph has no tensor for.
inline std::string llama_tensor_name(const std::string& module) {
  if (module == "lm_head") return "output.weight";
  static constexpr std::pair<std::string_view, std::string_view> kParts[] = {
      {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  std::string_view rest = module;
  if (rest.starts_with("base_model.model.")) rest.remove_prefix(17);
  if (rest.starts_with("model.")) rest.remove_prefix(6);
  if (rest.starts_with("layers.")) {
    rest.remove_prefix(7);
    const auto dot = rest.find('.');
    const auto layer = rest.substr(0, dot);
    if (dot != std::string_view::npos && !layer.empty() &&
        std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; }))
      for (const auto& [hf, gguf] : kParts)
        if (rest.substr(dot + 1) == hf) return "blk." + std::string(layer) + "." + std::string(gguf) + ".weight";
  }
  ::peft::detail::raise("llama_tensor_name: module '", module, "' is not a LLaMA projection (expected "
                        "model.layers.<i>.self_attn.{q,k,v,o}_proj, model.layers.<i>.mlp.{gate,up,down}_proj or lm_head)");
}

/// Where a module's LoRA goes in a GGUF model: the base tensor's name and,
/// for a LLaMA q or k projection, the head count whose rotary row
/// permutation llama.cpp's converter applied to the base weight (lora_b's
/// rows get the same, so that ΔW lands where the permuted W is); 0: none.
struct GgufTarget {
  /// A plain name converts: a module with no permutation.
  GgufTarget(std::string tensor_name, Index heads = 0) : name(std::move(tensor_name)), permute_heads(heads) {}
  std::string name;         ///< e.g. "blk.0.attn_q.weight"
  Index permute_heads = 0;  ///< heads of the q/k row permutation, 0 for none
};

/// Module name -> its GGUF target (a function returning the tensor name also fits).
using GgufTensorMap = std::function<GgufTarget(const std::string& module)>;

/// Hugging Face LLaMA modules as llama.cpp's converter lays them out:
/// llama_tensor_name, and q_proj / k_proj permuted with `heads` /
/// `kv_heads` (the model's num_attention_heads and num_key_value_heads).
inline GgufTensorMap llama_tensors(Index heads, Index kv_heads) {
  PEFT_REQUIRE(heads > 0 && kv_heads > 0 && heads % kv_heads == 0, "llama_tensors: heads (", heads,
               ") and kv_heads (", kv_heads, ") must be > 0, kv_heads dividing heads");
  return [=](const std::string& module) {
    std::string name = llama_tensor_name(module);
    const Index permute = name.ends_with(".attn_q.weight") ? heads : name.ends_with(".attn_k.weight") ? kv_heads : 0;
    return GgufTarget(std::move(name), permute);
  };
}

/// What save_gguf_lora writes besides the tensors.
struct GgufLoRAOptions {
  std::string architecture = "llama";  ///< general.architecture: must be the base model's
  std::string name;                    ///< general.name, if not empty
};

namespace detail {

/// One module's LoRA as llama.cpp will apply it: ΔW = scale · B · A.
template <class T>
struct GgufLoRAModule {
  GgufTarget target;  // the base tensor's GGUF name and row permutation
  Matrix<T> A, B;     // r x d_in, d_out x r
  double scale;       // ours: α/r or α/√r
};

/// llama.cpp's converter's rotary permutation of a q/k weight's rows: per
/// head, the two halves of the head dimension interleaved (row h·d + j·d/2 + i
/// goes to h·d + 2i + j, d = rows / heads).
template <class T>
Matrix<T> permute_rotary_rows(const Matrix<T>& M, Index heads, const std::string& who, const std::string& tensor) {
  PEFT_REQUIRE(M.rows() % (2 * heads) == 0, who, ": tensor '", tensor, "' has ", M.rows(),
               " rows, which ", heads, " heads of even size cannot split");
  const Index head_dim = M.rows() / heads, half = head_dim / 2;
  Matrix<T> out(M.rows(), M.cols());
  for (Index h = 0; h < heads; ++h)
    for (Index j = 0; j < 2; ++j)
      for (Index i = 0; i < half; ++i) out.row(h * head_dim + 2 * i + j) = M.row(h * head_dim + j * half + i);
  return out;
}

template <class T>
void write_gguf_lora(const std::filesystem::path& path, std::vector<GgufLoRAModule<T>> modules,
                     const GgufLoRAOptions& options, const std::string& who) {
  PEFT_REQUIRE(!modules.empty(), who, ": no modules");
  PEFT_REQUIRE(!options.architecture.empty(), who, ": options.architecture must name the base model's (e.g. llama)");
  // llama.cpp scales by alpha / r; alpha is chosen so that most modules need
  // no folding (alpha = scale · r), the others' ratio goes into lora_b.
  std::vector<double> alphas;
  for (const auto& m : modules) alphas.push_back(m.scale * static_cast<double>(m.A.rows()));
  double alpha = alphas.front();
  std::size_t best = 0;
  for (const double a : alphas) {
    const auto n = static_cast<std::size_t>(std::count(alphas.begin(), alphas.end(), a));
    if (n > best) alpha = a, best = n;
  }
  const float file_alpha = static_cast<float>(alpha);
  std::vector<std::string> names;
  for (auto& m : modules) {
    PEFT_REQUIRE(std::find(names.begin(), names.end(), m.target.name) == names.end(), who, ": tensor '",
                 m.target.name, "' given twice");
    names.push_back(m.target.name);
    const double applied = static_cast<double>(file_alpha) / static_cast<double>(m.A.rows());
    if (m.scale != applied) m.B *= static_cast<T>(m.scale / applied);
    if (m.target.permute_heads > 0) m.B = permute_rotary_rows(m.B, m.target.permute_heads, who, m.target.name);
  }

  std::string out;
  auto u32 = [&](std::uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](std::uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](const std::string& s) {
    u64(s.size());
    out += s;
  };
  auto kv_string = [&](const std::string& key, const std::string& value) {
    str(key);
    u32(static_cast<std::uint32_t>(GgufType::String));
    str(value);
  };
  u32(0x46554747u);
  u32(3);
  u64(2 * modules.size());
  u64(options.name.empty() ? 4 : 5);
  kv_string("general.architecture", options.architecture);
  kv_string("general.type", "adapter");
  if (!options.name.empty()) kv_string("general.name", options.name);
  kv_string("adapter.type", "lora");
  str("adapter.lora.alpha");
  u32(static_cast<std::uint32_t>(GgufType::Float32));
  out.append(reinterpret_cast<const char*>(&file_alpha), 4);
  std::uint64_t offset = 0;
  auto info = [&](const std::string& name, const Matrix<T>& m) {
    str(name);
    u32(2);
    u64(static_cast<std::uint64_t>(m.cols()));  // ggml order: the fastest dimension first
    u64(static_cast<std::uint64_t>(m.rows()));
    u32(kGgmlF32);
    u64(offset);
    offset += (static_cast<std::uint64_t>(m.size()) * 4 + 31) / 32 * 32;
  };
  for (const auto& m : modules) {
    info(m.target.name + ".lora_a", m.A);
    info(m.target.name + ".lora_b", m.B);
  }
  out.append((32 - out.size() % 32) % 32, '\0');
  auto data = [&](const Matrix<T>& m) {
    const Matrix<float> f = m.template cast<float>();
    out.append(reinterpret_cast<const char*>(f.data()), static_cast<std::size_t>(f.size()) * 4);
    out.append((32 - out.size() % 32) % 32, '\0');
  };
  for (const auto& m : modules) {
    data(m.A);
    data(m.B);
  }
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  PEFT_REQUIRE(static_cast<bool>(file), who, ": cannot open the file for writing");
  file.write(out.data(), static_cast<std::streamsize>(out.size()));
  file.flush();
  PEFT_REQUIRE(static_cast<bool>(file), who, ": writing failed");
}

}  // namespace detail

/// Writes the LoRA layers as a GGUF adapter llama.cpp loads
/// (llama_adapter_lora_init): `tensors` maps each module to its base tensor
/// in the GGUF model (for a LLaMA model converted by llama.cpp:
/// llama_tensors(heads, kv_heads); a function giving names fits where the
/// converter permuted nothing). Each module's
/// scaling (rsLoRA, its own r and alpha) comes out exactly. Throws
/// peft::Error for a layer that is not a LoRA, a LoRA with lora_bias (no
/// GGUF form), a duplicate tensor name, or non-finite values.
template <class T>
void save_gguf_lora(const std::filesystem::path& path, const std::vector<SavedModule<T>>& modules,
                    const GgufTensorMap& tensors, const GgufLoRAOptions& options = {}) {
  const std::string who = "save_gguf_lora('" + path.string() + "')";
  std::vector<detail::GgufLoRAModule<T>> out;
  for (const auto& m : modules) {
    const auto* config = std::any_cast<LoRAConfig>(&m.state.config);
    PEFT_REQUIRE(config && m.state.parameters, who, ": module '", m.name,
                 "' is not a LoRA layer; llama.cpp's GGUF adapters hold LoRA only");
    PEFT_REQUIRE(!config->lora_bias, who, ": module '", m.name, "' has lora_bias, which GGUF adapters cannot hold");
    const ParameterBlock<T>& block = *m.state.parameters;
    const Index a = block.find("lora_A"), b = block.find("lora_B");
    PEFT_REQUIRE(a >= 0 && b >= 0, who, ": module '", m.name, "' lacks lora_A or lora_B");
    PEFT_REQUIRE(block.values().allFinite(), who, ": module '", m.name, "' holds NaN or Inf");
    const double r = static_cast<double>(config->r);
    out.push_back({tensors(m.name), Matrix<T>(block.value(a)), Matrix<T>(block.value(b)),
                   config->rslora ? config->alpha / std::sqrt(r) : config->alpha / r});
  }
  detail::write_gguf_lora(path, std::move(out), options, who);
}

/// The same for a loaded LORA directory (what convert_lora_to_gguf.py does,
/// with rank_pattern, alpha_pattern and rsLoRA kept exact).
template <class T>
void save_gguf_lora(const std::filesystem::path& path, const PeftAdapters<T>& adapters, const GgufTensorMap& tensors,
                    const GgufLoRAOptions& options = {}) {
  const std::string who = "save_gguf_lora('" + path.string() + "')";
  const PeftConfig& c = adapters.config();
  PEFT_REQUIRE(c.peft_type == "LORA" && !c.use_dora, who, ": the directory holds ", c.use_dora ? "DoRA" : c.peft_type,
               "; llama.cpp's GGUF adapters hold LoRA only");
  PEFT_REQUIRE(!c.lora_bias, who, ": lora_bias adapters have no GGUF form");
  std::vector<detail::GgufLoRAModule<T>> out;
  for (const auto& module : adapters.modules()) {
    const std::string key = std::string(kPeftKeyPrefix) + module + ".";
    Matrix<T> A = adapters.tensors().at(key + "lora_A.weight").template to_matrix<T>();
    Matrix<T> B = adapters.tensors().at(key + "lora_B.weight").template to_matrix<T>();
    PEFT_REQUIRE(A.allFinite() && B.allFinite(), who, ": module '", module, "' holds NaN or Inf");
    const double r = static_cast<double>(c.rank_for(module)), alpha = c.alpha_for(module);
    PEFT_REQUIRE(A.rows() == static_cast<Index>(r) && B.cols() == A.rows(), who, ": module '", module,
                 "' has lora_A of ", A.rows(), " rows, the config gives r = ", r);
    out.push_back({tensors(module), std::move(A), std::move(B), c.use_rslora ? alpha / std::sqrt(r) : alpha / r});
  }
  detail::write_gguf_lora(path, std::move(out), options, who);
}

}  // namespace peft::io
