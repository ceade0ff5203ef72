#pragma once
// Hugging Face PEFT adapter directories: adapter_config.json plus
// adapter_model.safetensors with keys "base_model.model.<module>.<tensor>".
//   load_peft<T>(dir)          reads and checks both files; wrap(module, base)
//                              builds that module's adapted layer from them
//   save_peft(dir, config, {{"fc1", layer1}, ...})   writes files PEFT loads
// Tensor names are our parameter names, with PEFT's ".weight" suffix added
// for LoRA's lora_A/lora_B (DoRA, LORA with use_dora: also
// "lora_magnitude_vector", 1-D, without the suffix as PEFT saves it). LoRTA's shared factors are stored once, as
// "lorta.<name>" (lora_A, lora_B, lora_C_h, lora_C_l, lora_C_m).
// A config field `bias` other than "none" means the file carries trained base
// biases ("<module>.base_layer.bias"); wrap() puts them into the base layer.

#include <any>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <peft/adapters/c3a.hpp>
#include <peft/adapters/dora.hpp>
#include <peft/adapters/ia3.hpp>
#include <peft/adapters/lokr.hpp>
#include <peft/adapters/lora.hpp>
#include <peft/adapters/lorta.hpp>
#include <peft/adapters/melora.hpp>
#include <peft/adapters/red.hpp>
#include <peft/adapters/surm.hpp>
#include <peft/adapters/surm_adapter.hpp>
#include <peft/core/adapted.hpp>
#include <peft/core/adapted_layer.hpp>
#include <peft/core/error.hpp>
#include <peft/core/multi_adapted.hpp>
#include <peft/io/peft_config.hpp>
#include <peft/io/safetensors.hpp>

namespace peft::io {

inline constexpr std::string_view kPeftKeyPrefix = "base_model.model.";  ///< before "<module>.<tensor>" in tensor keys
inline constexpr std::string_view kLoRTAKeyPrefix = "lorta.";           ///< before LoRTA's shared factor names
inline constexpr const char* kConfigFile = "adapter_config.json";        ///< the config's file name in a directory
inline constexpr const char* kWeightsFile = "adapter_model.safetensors"; ///< the tensors' file name in a directory

namespace detail {

using ::peft::detail::raise;

/// The file's tensor suffix for our parameter `name`.
inline std::string peft_tensor_name(const std::string& peft_type, std::string_view name) {
  if (peft_type == "LORA" && (name == "lora_A" || name == "lora_B")) return std::string(name) + ".weight";
  return std::string(name);
}

/// Tensor suffixes each type's modules may carry (MELoRA's are numbered; `dora`:
/// LORA with use_dora).
inline std::vector<std::string> tensor_suffixes(const std::string& peft_type, bool dora = false) {
  if (peft_type == "LORA" && dora) return {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
  if (peft_type == "LORA") return {"lora_A.weight", "lora_B.weight", "lora_B.bias"};
  if (peft_type == "IA3") return {"ia3_l"};
  if (peft_type == "C3A") return {"c3a_kernel"};
  if (peft_type == "LOKR") return {"lokr_w1", "lokr_w2", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b"};
  if (peft_type == "RED") return {"red_scale", "red_bias"};
  std::vector<std::string> surm = {"circulant_A", "circulant_B", "toeplitz_a", "toeplitz_b", "toeplitz",
                                   "kronecker_A", "kronecker_B", "ldr_g",       "ldr_h"};
  if (peft_type == "SURM") return surm;
  if (peft_type == "SURM_ADAPTER") {
    surm.push_back("adapter_bias");
    return surm;
  }
  return {};
}

/// Splits "<module>.<suffix>" for a type's suffixes; nullopt if none fits.
inline std::optional<std::pair<std::string, std::string>> split_module_key(const std::string& peft_type,
                                                                           std::string_view rest, bool dora = false) {
  for (const auto& suffix : tensor_suffixes(peft_type, dora)) {
    if (rest.size() > suffix.size() + 1 && ::peft::io::detail::ends_with(rest, "." + suffix))
      return std::pair{std::string(rest.substr(0, rest.size() - suffix.size() - 1)), suffix};
  }
  if (peft_type == "MELORA") {  // <module>.lora_A.<i> / <module>.lora_B.<i>
    for (const char* stem : {".lora_A.", ".lora_B."}) {
      const auto at = rest.rfind(stem);
      if (at == std::string_view::npos || at == 0) continue;
      const auto index = rest.substr(at + 8);
      if (!index.empty() && index.size() < 10 &&
          std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::pair{std::string(rest.substr(0, at)), std::string(rest.substr(at + 1))};
    }
  }
  return std::nullopt;
}

inline std::string shape_text(std::span<const Index> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::vector<Index> s(shape.begin(), shape.end());
  return shape_text(std::span<const Index>(s));
}

inline std::string read_text_file(const std::filesystem::path& path, const std::string& who) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) raise(who, ": missing file '", path.string(), "'");
  const auto bytes = std::filesystem::file_size(path, ec);
  if (ec) raise(who, ": cannot read the size of '", path.string(), "'");
  if (bytes > 64u << 20) raise(who, ": '", path.string(), "' is ", bytes, " bytes; a config over 64 MiB is refused");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) raise(who, ": cannot read '", path.string(), "'");
  return text.str();
}

/// Refuses NaN and Inf in a loaded tensor (after the conversion to T, so an
/// F64 value beyond T's range counts too) unless the load allows them.
template <class Values>
void check_finite(const Values& values, const std::string& key, bool allow_non_finite, const std::string& who) {
  if (allow_non_finite || values.allFinite()) return;
  const auto bad = values.size() - values.array().isFinite().count();
  raise(who, ": tensor '", key, "' holds ", bad, " NaN or Inf value(s); expected finite values (load with "
        "LoadOptions{.allow_non_finite = true} to read it anyway)");
}

/// Copies a file tensor into a parameter view after checking its shape.
template <class T>
void load_parameter(const Tensor& tensor, const std::string& key, Parameter<T> p, const std::string& who,
                    bool allow_non_finite) {
  const std::vector<Index> file_shape(tensor.shape.begin(), tensor.shape.end());
  if (!std::equal(file_shape.begin(), file_shape.end(), p.shape.begin(), p.shape.end()))
    raise(who, ": tensor '", key, "' has shape ", shape_text(tensor.shape), ", the layer needs ",
          shape_text(p.shape));
  PEFT_REQUIRE(tensor.dtype == "F32" || tensor.dtype == "F64" || tensor.dtype == "F16" || tensor.dtype == "BF16",
               who, ": tensor '", key, "' has dtype ", tensor.dtype, ", expected F32, F64, F16 or BF16");
  p.value = tensor.to_matrix<T>();
  check_finite(p.value, key, allow_non_finite, who);
}

/// Builds the adapter the config gives module `name` over a d_in -> d_out
/// layer (LoRTA layers use `factors`) and returns visit(adapter).
template <class T, class Visit>
decltype(auto) with_adapter(const PeftConfig& c, const std::string& name, Index d_in, Index d_out,
                            const std::shared_ptr<LoRTAFactors<T>>& factors, Visit&& visit) {
  const std::string& type = c.peft_type;
  if (type == "LORA" && c.use_dora)
    return visit(DoRA<T>(d_in, d_out, {.r = c.rank_for(name), .alpha = c.alpha_for(name), .rslora = c.use_rslora,
                                       .dropout = c.lora_dropout}));
  if (type == "LORA")
    return visit(LoRA<T>(d_in, d_out, {.r = c.rank_for(name), .alpha = c.alpha_for(name), .rslora = c.use_rslora,
                                       .dropout = c.lora_dropout, .lora_bias = c.lora_bias}));
  if (type == "IA3") return visit(IA3<T>(d_in, d_out, {.feedforward = c.is_feedforward(name)}));
  if (type == "C3A") return visit(C3A<T>(d_in, d_out, {.block_size = c.block_size_for(name)}));
  if (type == "LOKR")
    return visit(LoKr<T>(d_in, d_out,
                         {.r = c.rank_for(name), .alpha = c.alpha_for(name), .decompose_both = c.decompose_both,
                          .decompose_factor = c.decompose_factor, .rank_dropout = c.rank_dropout,
                          .rank_dropout_scale = c.rank_dropout_scale, .module_dropout = c.module_dropout}));
  if (type == "SURM")
    return visit(SURM<T>(d_in, d_out, {.structure = c.structure, .rank = c.rank, .alpha = c.alpha}));
  if (type == "SURM_ADAPTER")
    return visit(SURMAdapter<T>(d_in, d_out, {.structure = c.structure, .rank = c.rank, .alpha = c.alpha,
                                              .activation = c.activation, .dropout = c.dropout}));
  if (type == "RED") return visit(RED<T>(d_in, d_out, {.scale = c.train_scale, .bias = c.train_bias}));
  if (type == "MELORA")
    return visit(MELoRA<T>(d_in, d_out, {.r = c.r, .n = c.num_minis, .alpha = c.lora_alpha, .dropout = c.lora_dropout}));
  if (type == "LORTA") {
    const auto it = c.module_map.find(name);
    PEFT_REQUIRE(it != c.module_map.end(), "LoRTA: module '", name, "' is not in the config's module_map");
    PEFT_REQUIRE(d_in == factors->config().d && d_out == factors->config().d, "LoRTA: module '", name,
                 "' must be ", factors->config().d, " x ", factors->config().d, " (hidden_size), got ",
                 ::peft::detail::shape_str(d_out, d_in));
    return visit(LoRTA<T>(factors, it->second.first, it->second.second));
  }
  raise("make_layer: peft_type '", type, "' is not supported");
}

/// The adapter the config gives module `name`, wrapped with `base`.
template <class T>
AdaptedLayer<T> make_layer(const PeftConfig& c, const std::string& name, Linear<T> base,
                           const std::shared_ptr<LoRTAFactors<T>>& factors) {
  const Index d_in = base.in_features(), d_out = base.out_features();
  return with_adapter<T>(c, name, d_in, d_out, factors, [&](auto adapter) {
    using A = decltype(adapter);
    return AdaptedLayer<T>(Adapted<A>(std::move(base), std::move(adapter)), c.peft_type);
  });
}

template <class T>
std::shared_ptr<LoRTAFactors<T>> make_lorta_factors(const PeftConfig& c) {
  return std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = c.r, .alpha = c.lora_alpha, .d = c.hidden_size,
                                                       .heads = c.heads, .layers = c.layers,
                                                       .matrix_types = c.matrix_types, .rslora = c.use_rslora,
                                                       .dropout = c.lora_dropout});
}

/// Creates `dir` and writes both files of an adapter directory.
inline void write_directory(const std::filesystem::path& dir, const PeftConfig& config, const TensorMap& tensors,
                            const Metadata& metadata, const std::string& who) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PEFT_REQUIRE(!ec, who, ": cannot create the directory: ", ec.message());
  write_safetensors(dir / kWeightsFile, tensors, metadata);
  std::ofstream out(dir / kConfigFile, std::ios::trunc);
  out << config.to_json().dump(2) << "\n";
  out.flush();
  PEFT_REQUIRE(static_cast<bool>(out), who, ": cannot write '", (dir / kConfigFile).string(), "'");
}

}  // namespace detail

/// The config that describes adapters built from one of our configs, for
/// save_peft (target_modules empty: filled with the saved module names).
inline PeftConfig peft_config(const LoRAConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "LORA";
  p.target_modules = std::move(targets);
  p.r = c.r;
  p.lora_alpha = c.alpha;
  p.use_rslora = c.rslora;
  p.lora_dropout = c.dropout;
  p.lora_bias = c.lora_bias;
  return p;
}
/// DoRA: LORA with use_dora = true (r, alpha, rsLoRA, dropout; no lora_bias).
inline PeftConfig peft_config(const DoRAConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "LORA";
  p.target_modules = std::move(targets);
  p.r = c.r;
  p.lora_alpha = c.alpha;
  p.use_rslora = c.rslora;
  p.lora_dropout = c.dropout;
  p.use_dora = true;
  return p;
}
/// IA3: `feedforward` lists the modules that scale their input (a subset of targets).
inline PeftConfig ia3_peft_config(std::vector<std::string> targets, std::vector<std::string> feedforward = {}) {
  PeftConfig p;
  p.peft_type = "IA3";
  p.target_modules = std::move(targets);
  p.feedforward_modules = std::move(feedforward);
  return p;
}
/// C3A: block_size (a per-module block_size_pattern is left empty).
inline PeftConfig peft_config(const C3AConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "C3A";
  p.target_modules = std::move(targets);
  p.block_size = c.block_size;
  return p;
}
/// LoKr: r, alpha, the decomposition and both dropouts.
inline PeftConfig peft_config(const LoKrConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "LOKR";
  p.target_modules = std::move(targets);
  p.r = c.r;
  p.alpha = c.alpha;
  p.decompose_both = c.decompose_both;
  p.decompose_factor = c.decompose_factor;
  p.rank_dropout = c.rank_dropout;
  p.rank_dropout_scale = c.rank_dropout_scale;
  p.module_dropout = c.module_dropout;
  return p;
}
/// SURM: structure, rank and alpha.
inline PeftConfig peft_config(const SURMConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "SURM";
  p.target_modules = std::move(targets);
  p.structure = c.structure;
  p.rank = c.rank;
  p.alpha = c.alpha;
  return p;
}
/// SURM adapter: structure, rank, alpha, activation and dropout.
inline PeftConfig peft_config(const SURMAdapterConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "SURM_ADAPTER";
  p.target_modules = std::move(targets);
  p.structure = c.structure;
  p.rank = c.rank;
  p.alpha = c.alpha;
  p.activation = c.activation;
  p.dropout = c.dropout;
  return p;
}
/// RED: train_scale and train_bias.
inline PeftConfig peft_config(const REDConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "RED";
  p.target_modules = std::move(targets);
  p.train_scale = c.scale;
  p.train_bias = c.bias;
  return p;
}
/// MELoRA: r per mini, num_minis, lora_alpha and lora_dropout.
inline PeftConfig peft_config(const MELoRAConfig& c, std::vector<std::string> targets = {}) {
  PeftConfig p;
  p.peft_type = "MELORA";
  p.target_modules = std::move(targets);
  p.r = c.r;
  p.num_minis = c.n;
  p.lora_alpha = c.alpha;
  p.lora_dropout = c.dropout;
  return p;
}
/// LoRTA: the module map is filled by save_peft from the layers' positions.
inline PeftConfig peft_config(const LoRTAConfig& c) {
  PeftConfig p;
  p.peft_type = "LORTA";
  p.r = c.r;
  p.lora_alpha = c.alpha;
  p.use_rslora = c.rslora;
  p.lora_dropout = c.dropout;
  p.hidden_size = c.d;
  p.heads = c.heads;
  p.layers = c.layers;
  p.matrix_types = c.matrix_types;
  return p;
}

/// How load_peft treats what it reads.
struct LoadOptions {
  /// NaN and Inf in the adapter's tensors are refused unless this is set
  /// (a diverged run's checkpoint, read to inspect it).
  bool allow_non_finite = false;
};

/// A loaded adapter directory: its config, the adapted module names, and
/// wrap() to build each module's layer. Loading checks that every tensor
/// belongs to a module the config targets and every target has tensors.
template <class T>
class PeftAdapters {
 public:
  /// From a parsed config and tensor file (load_peft reads both from a directory); `source`
  /// names them in messages. Throws peft::Error if a tensor does not fit the config.
  PeftAdapters(PeftConfig config, Safetensors tensors, std::string source, LoadOptions options = {})
      : config_(std::move(config)), tensors_(std::move(tensors)), source_(std::move(source)), options_(options) {
    index_tensors();
    if (config_.peft_type == "LORTA") {
      factors_ = detail::make_lorta_factors<T>(config_);
      for (auto p : factors_->parameters()) {
        const std::string key = std::string(kLoRTAKeyPrefix) + std::string(p.name);
        PEFT_REQUIRE(tensors_.contains(key), who(), ": missing the shared LoRTA tensor '", key, "'");
        detail::load_parameter(tensors_.at(key), key, p, who(), options_.allow_non_finite);
      }
    }
  }

  const PeftConfig& config() const { return config_; }  ///< the directory's adapter_config.json
  /// Adapted module names, sorted.
  const std::vector<std::string>& modules() const { return modules_; }
  const Safetensors& tensors() const { return tensors_; }  ///< every tensor of adapter_model.safetensors
  /// The directory it was read from.
  const std::string& source() const { return source_; }
  /// LoRTA: the factors every wrapped layer shares (one set per load).
  std::shared_ptr<LoRTAFactors<T>> lorta_factors() const { return factors_; }

  /// A trained base bias the file carries for `module` (bias = "lora_only" or
  /// "all"; with "all" also for modules without an adapter), if any.
  std::optional<Vector<T>> saved_bias(const std::string& module) const {
    for (const char* name : {".base_layer.bias", ".bias"}) {
      const std::string key = std::string(kPeftKeyPrefix) + module + name;
      if (!tensors_.contains(key)) continue;
      const Tensor& t = tensors_.at(key);
      PEFT_REQUIRE(t.shape.size() == 1, who(), ": tensor '", key, "' has shape ", detail::shape_text(t.shape),
                   ", a bias must be 1-D");
      Vector<T> bias = t.to_vector<T>();
      detail::check_finite(bias, key, options_.allow_non_finite, who());
      return bias;
    }
    return std::nullopt;
  }

  /// The (d_in, d_out) a module's tensors imply, where they determine it: not
  /// for IA3 and RED (which scale one side of W), and SURM's length-n
  /// structures are taken as square (n x n).
  std::optional<std::pair<Index, Index>> layer_shape(const std::string& module) const {
    const std::string prefix = std::string(kPeftKeyPrefix) + module + ".";
    auto dims = [&](const std::string& name) -> std::vector<Index> {
      const std::string key = prefix + name;
      if (!tensors_.contains(key)) return {};
      const auto& shape = tensors_.at(key).shape;
      return std::vector<Index>(shape.begin(), shape.end());
    };
    using Shape = std::optional<std::pair<Index, Index>>;
    auto both = [](Index d_in, Index d_out) -> Shape { return std::pair{d_in, d_out}; };
    const std::string& type = config_.peft_type;
    if (type == "LORA") {
      const auto A = dims("lora_A.weight"), B = dims("lora_B.weight");
      if (A.size() == 2 && B.size() == 2) return both(A[1], B[0]);
    } else if (type == "C3A") {
      const auto k = dims("c3a_kernel");
      if (k.size() == 3) return both(k[1] * k[2], k[0] * k[2]);
    } else if (type == "LOKR") {
      const auto w1 = dims("lokr_w1"), w1a = dims("lokr_w1_a"), w1b = dims("lokr_w1_b");
      const auto w2 = dims("lokr_w2"), w2a = dims("lokr_w2_a"), w2b = dims("lokr_w2_b");
      const Index out_l = w1.size() == 2 ? w1[0] : (w1a.size() == 2 ? w1a[0] : 0);
      const Index in_m = w1.size() == 2 ? w1[1] : (w1b.size() == 2 ? w1b[1] : 0);
      const Index out_k = w2.size() == 2 ? w2[0] : (w2a.size() == 2 ? w2a[0] : 0);
      const Index in_n = w2.size() == 2 ? w2[1] : (w2b.size() == 2 ? w2b[1] : 0);
      if (out_l && in_m && out_k && in_n) return both(in_m * in_n, out_l * out_k);
    } else if (type == "MELORA") {
      const auto A = dims("lora_A.0"), B = dims("lora_B.0");
      if (A.size() == 2 && B.size() == 2) return both(A[1] * config_.num_minis, B[0] * config_.num_minis);
    } else if (type == "SURM" || type == "SURM_ADAPTER") {
      if (const auto A = dims("kronecker_A"), B = dims("kronecker_B"); A.size() == 2 && B.size() == 2)
        return both(A[0] * A[1], B[0] * B[1]);
      if (const auto t = dims("toeplitz"); t.size() == 1) return both((t[0] + 1) / 2, (t[0] + 1) / 2);
      for (const char* name : {"circulant_A", "toeplitz_a", "ldr_g"})
        if (const auto v = dims(name); !v.empty()) return both(v.back(), v.back());
    } else if (type == "LORTA") {
      return both(config_.hidden_size, config_.hidden_size);
    }
    return std::nullopt;
  }

  /// Whether `module` is one of modules().
  bool contains(std::string_view module) const {
    return std::binary_search(modules_.begin(), modules_.end(), module);
  }

  /// The adapted layer for `module` around `base` (which must have the
  /// module's shape), with the saved parameters and, where the file has one,
  /// the saved base bias.
  AdaptedLayer<T> wrap(const std::string& module, Linear<T> base) const {
    PEFT_REQUIRE(contains(module), who(), ": no adapter for module '", module, "'; the directory adapts ",
                 module_list());
    const std::string prefix = std::string(kPeftKeyPrefix) + module + ".";
    if (auto bias = saved_bias(module)) {
      PEFT_REQUIRE(bias->size() == base.out_features(), who(), ": the saved bias of '", module, "' has ",
                   bias->size(), " entries, the layer's bias needs ", base.out_features());
      base.bias() = std::move(*bias);
    }
    AdaptedLayer<T> layer = [&] {
      try {
        return detail::make_layer<T>(config_, module, std::move(base), factors_);
      } catch (const Error& e) {
        ::peft::detail::raise(who(), ": module '", module, "': ", e.what());
      }
    }();
    // bias = "lora_only" / "all": PEFT trains the adapted layers' base biases.
    if (config_.bias != "none" && layer.base().has_bias()) layer.set_base_bias_trainable(true);
    if (config_.peft_type != "LORTA") {
      for (const auto& p : layer.parameters()) {
        if (p.name == kBaseBiasName) continue;  // the saved bias, if any, is in the base already
        const std::string key = prefix + detail::peft_tensor_name(config_.peft_type, p.name);
        PEFT_REQUIRE(tensors_.contains(key), who(), ": missing tensor '", key, "' for module '", module, "'");
        detail::load_parameter(tensors_.at(key), key, p, who(), options_.allow_non_finite);
      }
    }
    return layer;
  }

 private:
  std::string who() const { return "load_peft('" + source_ + "')"; }

  std::string module_list() const {
    std::string s;
    for (const auto& m : modules_) s += (s.empty() ? "" : ", ") + m;
    return s.empty() ? std::string("no module") : s;
  }

  void index_tensors() {
    std::set<std::string> modules;
    const bool lorta = config_.peft_type == "LORTA";
    for (const auto& [key, tensor] : tensors_) {
      if (lorta && key.starts_with(kLoRTAKeyPrefix)) continue;
      PEFT_REQUIRE(key.starts_with(kPeftKeyPrefix), who(), ": tensor '", key, "' does not start with '",
                   kPeftKeyPrefix, "'");
      const std::string_view rest = std::string_view(key).substr(kPeftKeyPrefix.size());
      const auto split = detail::split_module_key(config_.peft_type, rest, config_.use_dora);
      if (!split) {
        // Trained base biases (bias = "lora_only" or "all"), read by wrap().
        if (::peft::io::detail::ends_with(rest, ".base_layer.bias") ||
            (config_.bias != "none" && ::peft::io::detail::ends_with(rest, ".bias")))
          continue;
        ::peft::detail::raise(who(), ": tensor '", key, "' is not a ", config_.peft_type, " tensor (expected '",
                              kPeftKeyPrefix, "<module>.<tensor>')");
      }
      const std::string& module = split->first;
      if (lorta) {
        PEFT_REQUIRE(config_.module_map.count(module), who(), ": tensor '", key, "' is for module '", module,
                     "', which is not in the config's module_map");
      } else {
        PEFT_REQUIRE(config_.targets(module), who(), ": tensor '", key, "' is for module '", module,
                     "', which the config's target_modules does not select");
      }
      modules.insert(module);
    }
    if (lorta)
      for (const auto& [module, where] : config_.module_map) modules.insert(module);
    modules_.assign(modules.begin(), modules.end());
    PEFT_REQUIRE(!modules_.empty(), who(), ": the adapter file holds no ", config_.peft_type, " tensors");
    // As in PEFT, a listed target need not exist in the model (a config written
    // for several architectures, or one exclude_modules removes): no check.
  }


  PeftConfig config_;
  Safetensors tensors_;
  std::string source_;
  LoadOptions options_;
  std::vector<std::string> modules_;
  std::shared_ptr<LoRTAFactors<T>> factors_;
};

/// Reads `dir`/adapter_config.json and `dir`/adapter_model.safetensors.
template <class T>
PeftAdapters<T> load_peft(const std::filesystem::path& dir, LoadOptions options = {}) {
  const std::string who = "load_peft('" + dir.string() + "')";
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) ::peft::detail::raise(who, ": no such file or directory");
  PEFT_REQUIRE(std::filesystem::is_directory(dir, ec), who, ": not a directory; expected a directory holding ",
               kConfigFile, " and ", kWeightsFile, " (save_peft writes one)");
  const std::string text = detail::read_text_file(dir / kConfigFile, who);
  PeftConfig config = [&] {
    try {
      return PeftConfig::parse(text, (dir / kConfigFile).string());
    } catch (const Error& e) {
      ::peft::detail::raise(who, ": ", e.what());
    }
  }();
  PEFT_REQUIRE(std::filesystem::is_regular_file(dir / kWeightsFile, ec), who, ": missing file '",
               (dir / kWeightsFile).string(), "'");
  return PeftAdapters<T>(std::move(config), read_safetensors(dir / kWeightsFile), dir.string(), options);
}

/// One module to save: its name and its layer (typed or type-erased).
template <class T>
struct SavedModule {
  /// Refers to `layer` (its parameters and base): keep it alive until save_peft returns.
  ///@{
  template <class A, class B>
  SavedModule(std::string module, const Adapted<A, B>& layer) : name(std::move(module)), state(adapter_state(layer)) {}
  SavedModule(std::string module, const AdaptedLayer<T>& layer) : name(std::move(module)), state(layer.state()) {}
  ///@}
  /// One named adapter of a layer that holds several.
  template <class B>
  SavedModule(std::string module, const MultiAdapted<T, B>& layer, const std::string& adapter)
      : name(std::move(module)), state(layer.state(adapter)) {}

  std::string name;       ///< the module's name in the model, e.g. "model.layers.0.q_proj"
  AdapterState<T> state;  ///< what is saved: the parameters and the base
};

namespace detail {

/// One module's adapter as adapter_config.json fields: its type's fields with
/// this module's own values (r, alpha, block size; IA3: feedforward_modules
/// lists the module if it scales its input). target_modules stays empty.
inline PeftConfig describe_adapter(const std::any& config, const std::string& module, const std::string& who) {
  if (const auto* c = std::any_cast<LoRAConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<DoRAConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<IA3Config>(&config))
    return ia3_peft_config({}, c->feedforward ? std::vector<std::string>{module} : std::vector<std::string>{});
  if (const auto* c = std::any_cast<C3AConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<LoKrConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<SURMConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<SURMAdapterConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<REDConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<MELoRAConfig>(&config)) return peft_config(*c);
  if (const auto* c = std::any_cast<LoRTAConfig>(&config)) return peft_config(*c);
  raise(who, ": module '", module, "' holds an adapter a PEFT directory cannot describe (supported: LoRA, DoRA, IA3, "
        "C3A, LoKr, SURM, SURMAdapter, RED, MELoRA, LoRTA)");
}

/// What `config` gives `module`, in describe_adapter's form.
inline PeftConfig module_view(const PeftConfig& config, const std::string& module) {
  PeftConfig c = config;
  c.raw = nlohmann::ordered_json::object();
  c.target_modules.clear();
  c.target_modules_regex.clear();
  c.exclude_modules.clear();
  c.exclude_modules_regex.clear();
  c.r = config.rank_for(module);
  (c.peft_type == "LOKR" ? c.alpha : c.lora_alpha) = config.alpha_for(module);
  c.block_size = config.block_size_for(module);
  c.rank_pattern.clear();
  c.alpha_pattern.clear();
  c.block_size_pattern.clear();
  c.feedforward_modules.clear();
  c.feedforward_modules_regex.clear();
  if (c.peft_type == "IA3" && config.is_feedforward(module)) c.feedforward_modules = {module};
  c.module_map.clear();
  c.bias = "none";
  return c;
}

/// The adapter_config.json fields in which `want` (from a config) and `have`
/// (from a layer) differ, as "field: the config gives X, the layer has Y; ...".
inline std::string config_differences(const PeftConfig& want, const PeftConfig& have) {
  if (want.peft_type != have.peft_type)
    return "peft_type: the config gives " + want.peft_type + ", the layer is " + have.peft_type;
  const auto a = want.to_json(), b = have.to_json();
  std::string out;
  for (const auto& [key, value] : b.items())
    if (key != "target_modules" && (!a.contains(key) || a.at(key) != value))
      out += (out.empty() ? "" : "; ") + key + ": the config gives " + (a.contains(key) ? a.at(key).dump() : "nothing") +
             ", the layer has " + value.dump();
  return out;
}

/// The most common value of field(spec) over the specs (the first on a tie).
template <class Field>
auto most_common(const std::vector<PeftConfig>& specs, Field field) {
  auto best = field(specs.front());
  std::size_t best_count = 0;
  for (const auto& s : specs) {
    const auto v = field(s);
    const auto count = static_cast<std::size_t>(
        std::count_if(specs.begin(), specs.end(), [&](const PeftConfig& o) { return field(o) == v; }));
    if (count > best_count) best = v, best_count = count;
  }
  return best;
}

}  // namespace detail

/// The adapter_config.json that describes these layers as they are: their
/// type and options, the most common r / alpha / block size with
/// rank_pattern, alpha_pattern or block_size_pattern entries (full module
/// names, checked to resolve to each module's value under PEFT's matching)
/// for the others, target_modules = the module names, bias = "lora_only" when
/// a LoRA layer trains its base bias. Throws peft::Error if the layers differ
/// in type or in an option adapter_config.json holds once for all modules.
template <class T>
PeftConfig peft_config_of(const std::vector<SavedModule<T>>& modules, const std::string& who = "peft_config_of") {
  using ::peft::detail::raise;
  PEFT_REQUIRE(!modules.empty(), who, ": no modules");
  std::vector<PeftConfig> specs;
  for (const auto& m : modules) specs.push_back(detail::describe_adapter(m.state.config, m.name, who));
  PeftConfig config = specs.front();
  if (config.peft_type == "LORTA") return config;  // save_peft fills module_map from the layers
  const bool lokr = config.peft_type == "LOKR";
  config.r = detail::most_common(specs, [](const PeftConfig& c) { return c.r; });
  (lokr ? config.alpha : config.lora_alpha) =
      detail::most_common(specs, [&](const PeftConfig& c) { return lokr ? c.alpha : c.lora_alpha; });
  config.block_size = detail::most_common(specs, [](const PeftConfig& c) { return c.block_size; });
  config.feedforward_modules.clear();
  for (std::size_t i = 0; i < modules.size(); ++i) {
    config.target_modules.push_back(modules[i].name);
    if (!specs[i].feedforward_modules.empty()) config.feedforward_modules.push_back(modules[i].name);
    if (modules[i].state.base_bias_trainable) {
      PEFT_REQUIRE(config.peft_type == "LORA" || config.peft_type == "C3A", who, ": module '", modules[i].name,
                   "' trains its base bias, which PEFT's ", config.peft_type,
                   " config cannot record (LORA: bias = \"lora_only\", C3A: \"c3a_only\")");
      config.bias = config.peft_type == "LORA" ? "lora_only" : "c3a_only";
    }
  }
  // A pattern key (a module name) also matches longer names ending in "." + key,
  // so a module the key would mislead gets its own key; longer keys come first.
  std::vector<bool> keyed(modules.size(), false);
  for (int pass = 0;; ++pass) {
    config.rank_pattern.clear();
    config.alpha_pattern.clear();
    config.block_size_pattern.clear();
    std::vector<std::size_t> order(modules.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return modules[a].name.size() > modules[b].name.size();
    });
    for (const std::size_t i : order) {
      const PeftConfig& s = specs[i];
      const std::string& name = modules[i].name;
      if (keyed[i] || s.r != config.r) config.rank_pattern.emplace_back(name, s.r);
      const double a = lokr ? s.alpha : s.lora_alpha, base_alpha = lokr ? config.alpha : config.lora_alpha;
      if (keyed[i] || a != base_alpha) config.alpha_pattern.emplace_back(name, a);
      if (config.peft_type == "C3A" && (keyed[i] || s.block_size != config.block_size))
        config.block_size_pattern.emplace_back(name, s.block_size);
    }
    if (config.peft_type != "LORA" && config.peft_type != "LOKR") {
      config.rank_pattern.clear();
      config.alpha_pattern.clear();
    }
    bool settled = true;
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const std::string diff = detail::config_differences(detail::module_view(config, modules[i].name), specs[i]);
      if (diff.empty()) continue;
      const bool pattern_field = diff.starts_with("r:") || diff.starts_with("lora_alpha:") ||
                                 diff.starts_with("alpha:") || diff.starts_with("block_size:");
      if (!pattern_field || (pass > 0 && keyed[i]))
        raise(who, ": module '", modules[i].name, "' differs from '", modules.front().name,
              "' in what adapter_config.json holds once for all modules (", diff, ")");
      keyed[i] = true;
      settled = false;
    }
    if (settled) return config;
  }
}

/// How save_peft writes the tensors.
struct SaveOptions {
  std::string dtype = "F32";  ///< "F32" (PEFT's default) or "F64"
};

/// Writes `dir`/adapter_config.json and `dir`/adapter_model.safetensors for
/// the modules, with `config` as adapter_config.json. It must describe every
/// module's adapter exactly (type, rank, scaling, options: a mismatch would
/// reload as a different adapter, so it throws peft::Error naming the
/// fields), and bias must not be "none" for a layer that trains its base
/// bias. An empty target_modules is filled with the module names, a LORTA
/// module_map from the layers' positions. Without `config`, peft_config_of()
/// of the modules is written.
template <class T>
void save_peft(const std::filesystem::path& dir, PeftConfig config, const std::vector<SavedModule<T>>& modules,
               const SaveOptions& options = {}) {
  using ::peft::detail::raise;
  const std::string who = "save_peft('" + dir.string() + "')";
  PEFT_REQUIRE(options.dtype == "F32" || options.dtype == "F64", who, ": dtype must be F32 or F64, got '",
               options.dtype, "'");
  PEFT_REQUIRE(!modules.empty(), who, ": no modules to save");
  {
    const auto& types = supported_peft_types();
    PEFT_REQUIRE(std::find(types.begin(), types.end(), config.peft_type) != types.end(), who, ": peft_type '",
                 config.peft_type, "' is not supported");
  }
  const bool lorta = config.peft_type == "LORTA";
  if (lorta) {
    const auto* shared = modules.front().state.parameters;
    for (const auto& m : modules) {
      PEFT_REQUIRE(m.state.shared && m.state.parameters == shared, who, ": LORTA modules must all share one factor set");
      config.module_map[m.name] = {m.state.layer, m.state.matrix_type};
    }
  } else if (config.target_modules.empty() && config.target_modules_regex.empty()) {
    for (const auto& m : modules) config.target_modules.push_back(m.name);
  }
  config.validate(who);

  TensorMap tensors;
  auto put = [&](const std::string& key, const auto& value, std::span<const Index> shape) {
    PEFT_REQUIRE(!tensors.count(key), who, ": tensor '", key, "' written twice (module listed twice?)");
    std::vector<std::int64_t> dims(shape.begin(), shape.end());
    tensors.emplace(key, Tensor::from(value, dims, options.dtype));
  };
  std::shared_ptr<LoRTAFactors<T>> factors;
  if (lorta) factors = detail::make_lorta_factors<T>(config);
  for (const auto& m : modules) {
    PEFT_REQUIRE(m.state.parameters != nullptr && m.state.bias != nullptr, who, ": module '", m.name,
                 "' has no layer");
    PEFT_REQUIRE(lorta || config.targets(m.name), who, ": module '", m.name,
                 "' is not selected by the config's target_modules");
    const std::string diff = detail::config_differences(detail::module_view(config, m.name),
                                                        detail::describe_adapter(m.state.config, m.name, who));
    PEFT_REQUIRE(diff.empty(), who, ": module '", m.name, "': the config does not describe its adapter (", diff,
                 "); save without a config to write the layers' own (peft_config_of)");
    PEFT_REQUIRE(!m.state.base_bias_trainable || config.bias != "none", who, ": module '", m.name,
                 "' trains its base bias, which bias = \"none\" would not save; expected bias = \"lora_only\"");
    // The layer the config describes must have exactly these tensors. Built
    // on a copy of a dense base, or a zero one of its shape (a rounded base:
    // only names and shapes are compared).
    const Vector<T>& bias = *m.state.bias;
    AdaptedLayer<T> expected = [&] {
      try {
        Linear<T> base = m.state.base ? Linear<T>(m.state.base->weight(), bias)
                                      : Linear<T>(Matrix<T>::Zero(m.state.out_features, m.state.in_features), bias);
        return detail::make_layer<T>(config, m.name, std::move(base), factors);
      } catch (const Error& e) {
        raise(who, ": module '", m.name, "': ", e.what());
      }
    }();
    const ParameterBlock<T>& block = *m.state.parameters;
    const auto want = expected.parameters();
    bool same = static_cast<Index>(want.size()) == block.size();
    for (Index i = 0; same && i < block.size(); ++i)
      same = want[static_cast<std::size_t>(i)].name == block.name(i) &&
             std::ranges::equal(want[static_cast<std::size_t>(i)].shape, block.shape(i));
    PEFT_REQUIRE(same, who, ": module '", m.name, "' does not hold the ", config.peft_type,
                 " parameters the config describes (names or shapes differ)");
    if (!lorta)
      for (Index i = 0; i < block.size(); ++i)
        put(std::string(kPeftKeyPrefix) + m.name + "." + detail::peft_tensor_name(config.peft_type, block.name(i)),
            block.value(i), block.shape(i));
    if (config.bias != "none" && bias.size() != 0)
      put(std::string(kPeftKeyPrefix) + m.name + ".base_layer.bias", bias.transpose(),
          std::vector<Index>{bias.size()});
  }
  if (lorta) {
    const ParameterBlock<T>& block = *modules.front().state.parameters;
    for (Index i = 0; i < block.size(); ++i)
      put(std::string(kLoRTAKeyPrefix) + std::string(block.name(i)), block.value(i), block.shape(i));
  }

  detail::write_directory(dir, config, tensors, {{"format", "pt"}}, who);
}

/// save_peft with the layers' own config, peft_config_of(modules).
template <class T>
void save_peft(const std::filesystem::path& dir, const std::vector<SavedModule<T>>& modules,
               const SaveOptions& options = {}) {
  save_peft(dir, peft_config_of(modules, "save_peft('" + dir.string() + "')"), modules, options);
}

/// Writes a loaded directory back: the same config fields and the same tensor
/// bytes (dtype and values unchanged).
template <class T>
void save_peft(const std::filesystem::path& dir, const PeftAdapters<T>& adapters) {
  detail::write_directory(dir, adapters.config(), adapters.tensors().tensors(), adapters.tensors().metadata(),
                          "save_peft('" + dir.string() + "')");
}

}  // namespace peft::io
