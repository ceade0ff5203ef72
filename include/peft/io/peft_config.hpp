#pragma once
// adapter_config.json, the config half of a Hugging Face PEFT adapter
// directory. One flat struct holds the fields of every supported peft_type
// (PEFT's own LORA, IA3, C3A, LOKR and our SURM, SURM_ADAPTER, RED, MELORA,
// LORTA); `raw` keeps the file's JSON so fields we do not model (and PEFT's
// bookkeeping such as auto_mapping) survive a load/save round trip.
//
// Module matching follows PEFT 0.21 exactly:
//   target_modules / exclude_modules   list: the name itself or ends with "." + entry;
//                                      string: a regex that must match the whole name
//   feedforward_modules (IA3)          list: the name ends with the entry (no dot needed);
//                                      string: full-match regex
//   rank_pattern / alpha_pattern       first key k with re.match("(.*\.)?(k)$", name)
//   block_size_pattern (C3A)           first key k with re.match(".*\.k$", name) (k ungrouped),
//                                      else a key equal to the name
//
// Fields of our own types (documented in README "Adapter directories"):
//   SURM          structure ("circulant", "circulant_single", "sym_toeplitz", "toeplitz",
//                 "kronecker", "ldr"), rank, alpha
//   SURM_ADAPTER  the same plus activation ("gelu", "relu", "identity") and dropout
//   RED           train_scale, train_bias
//   MELORA        r (per mini), num_minis, lora_alpha, lora_dropout
//   LORTA         r, lora_alpha, use_rslora, lora_dropout, hidden_size, heads, layers,
//                 matrix_types, module_map {module: [layer, matrix_type]}

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <peft/adapters/surm.hpp>
#include <peft/core/activation.hpp>
#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/io/module_pattern.hpp>

namespace peft::io {

/// PEFT's own types we read and write, then ours.
inline const std::vector<std::string>& supported_peft_types() {
  static const std::vector<std::string> types = {"LORA", "IA3",  "C3A",    "LOKR", "SURM",
                                                 "SURM_ADAPTER", "RED", "MELORA", "LORTA"};
  return types;
}

/// A pattern dict of adapter_config.json (rank_pattern, alpha_pattern,
/// block_size_pattern): {key: value} in the file's order, which decides which
/// key wins when several match one module (PEFT takes the first).
template <class Value>
using PatternList = std::vector<std::pair<std::string, Value>>;

/// adapter_config.json as one flat struct over every supported peft_type; fields
/// keep PEFT's names and defaults, and each applies to the types its group names.
struct PeftConfig {
  std::string peft_type;  ///< one of supported_peft_types(), e.g. "LORA"

  // Which modules are adapted: a list, or (when the file gives one string) a regex.
  std::vector<std::string> target_modules;  ///< a module matches if it is an entry or ends with "." + entry
  std::string target_modules_regex;         ///< instead of the list: must match the whole module name
  std::vector<std::string> exclude_modules; ///< as target_modules; excluded modules are never adapted
  std::string exclude_modules_regex;        ///< as target_modules_regex, for exclusion

  // LORA (r, lora_alpha, lora_dropout also MELORA and LORTA; r, rank_pattern, alpha_pattern also LOKR)
  Index r = 8;                                  ///< rank (MELORA: per mini)
  double lora_alpha = 8.0;                      ///< α of LoRA, MELoRA and LoRTA
  bool use_rslora = false;                      ///< scale by α/√r instead of α/r
  double lora_dropout = 0.0;                    ///< dropout on the adapter's input
  PatternList<Index> rank_pattern;    ///< module key -> r in file order, see rank_for()
  PatternList<double> alpha_pattern;  ///< module key -> α in file order, see alpha_for()
  std::string bias = "none";  ///< "none", "all" or "<type>_only" (lora_only, c3a_only): base biases trained and saved
  bool lora_bias = false;  ///< lora_B has a bias (LoRAConfig::lora_bias)
  bool fan_in_fan_out = false;  ///< accepted as PEFT does for nn.Linear: weights are always d_out x d_in here
  bool use_dora = false;        ///< LORA only: DoRA (a DoRA adapter, DoRAConfig); not with lora_bias, as PEFT

  // IA3
  std::vector<std::string> feedforward_modules;  ///< modules whose input is scaled: the name ends with an entry
  std::string feedforward_modules_regex;         ///< instead of the list: must match the whole module name

  // C3A
  Index block_size = 256;                           ///< b, see C3AConfig
  PatternList<Index> block_size_pattern;  ///< module key -> b in file order, see block_size_for()

  // LOKR (alpha also SURM and SURM_ADAPTER)
  double alpha = 8.0;               ///< LoKr's α; SURM's and SURM_ADAPTER's scaling
  bool decompose_both = false;      ///< see LoKrConfig
  Index decompose_factor = -1;      ///< see LoKrConfig
  double rank_dropout = 0.0;        ///< see LoKrConfig
  bool rank_dropout_scale = false;  ///< see LoKrConfig
  double module_dropout = 0.0;      ///< see LoKrConfig

  // SURM, SURM_ADAPTER
  Structure structure = Structure::Circulant;  ///< in JSON in snake case: "circulant", "sym_toeplitz", ...
  Index rank = 1;                              ///< LDR ρ or Kronecker r
  Activation activation = Activation::GELU;    ///< SURM_ADAPTER: "gelu", "relu" or "identity"
  double dropout = 0.0;                        ///< SURM_ADAPTER: dropout on the adapter's input

  // RED
  bool train_scale = true;  ///< REDConfig::scale
  bool train_bias = true;   ///< REDConfig::bias

  // MELORA
  Index num_minis = 2;  ///< n, MELoRAConfig::n

  // LORTA
  Index hidden_size = 0;   ///< d, LoRTAConfig::d
  Index heads = 1;         ///< H
  Index layers = 1;        ///< L
  Index matrix_types = 4;  ///< M
  std::map<std::string, std::pair<Index, Index>> module_map;  ///< module -> (layer, matrix type)

  /// The JSON this config was read from (empty for one built in code).
  nlohmann::ordered_json raw = nlohmann::ordered_json::object();

  /// Whether PEFT would adapt the module called `name`.
  bool targets(std::string_view name) const;
  /// The rank, alpha and block size PEFT would give the module `name`.
  ///@{
  Index rank_for(std::string_view name) const;
  double alpha_for(std::string_view name) const;
  Index block_size_for(std::string_view name) const;
  ///@}
  /// IA3: whether `name` scales its input (a feed-forward module).
  bool is_feedforward(std::string_view name) const;

  /// Parses adapter_config.json text; `source` names it in messages.
  static PeftConfig parse(std::string_view text, const std::string& source);
  /// Reads and validates an already parsed config; throws peft::Error for a missing or
  /// unsupported peft_type, a field of the wrong type or value, or a feature we refuse (Conv2d).
  static PeftConfig from_json(const nlohmann::ordered_json& json, const std::string& source);
  /// `raw` with every field of this peft_type written over it.
  nlohmann::ordered_json to_json() const;
  /// The cross-field rules PEFT enforces (raises peft::Error, `who` first).
  void validate(const std::string& who) const;
};

namespace detail {

using ::peft::detail::raise;
using Json = nlohmann::ordered_json;

/// A regex field or pattern key compiled now, so a bad one is refused at load.
inline void check_pattern(const std::string& pattern, const std::string& who) { ModulePattern(pattern, who); }

inline bool regex_full_match(const std::string& pattern, std::string_view name) {
  return ModulePattern(pattern, "PeftConfig").full_match(name);
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

/// PEFT's list rule: the name itself, or a dotted suffix of it.
inline bool list_matches(const std::vector<std::string>& list, std::string_view name) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& key) {
    return name == key || ends_with(name, "." + key);
  });
}

/// The first pattern dict key, in file order, that PEFT matches to `name`:
/// re.match(prefix + "(key)$", name).
template <class Patterns>
auto pattern_lookup(const Patterns& patterns, std::string_view name, const std::string& prefix) {
  for (auto it = patterns.begin(); it != patterns.end(); ++it)
    if (ModulePattern(prefix + "(" + it->first + ")$", "PeftConfig").match(name)) return it;
  return patterns.end();
}

/// Typed field access with messages that name the file and the field.
class Fields {
 public:
  Fields(const Json& json, const std::string& who) : json_(json), who_(who) {}

  bool has(const char* key) const { return json_.contains(key) && !json_.at(key).is_null(); }

  std::string string(const char* key, std::string fallback) const {
    if (!has(key)) return fallback;
    const Json& v = json_.at(key);
    if (!v.is_string()) raise(who_, ": field '", key, "' must be a string, got ", v.type_name());
    return v.get<std::string>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const Json& v = json_.at(key);
    if (!v.is_boolean()) raise(who_, ": field '", key, "' must be true or false, got ", v.type_name());
    return v.get<bool>();
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    return as_number(json_.at(key), key);
  }
  Index integer(const char* key, Index fallback) const {
    if (!has(key)) return fallback;
    return as_integer(json_.at(key), key);
  }

  /// A list of strings or one regex string.
  void modules(const char* key, std::vector<std::string>& list, std::string& regex) const {
    list.clear();
    regex.clear();
    if (!has(key)) return;
    const Json& v = json_.at(key);
    if (v.is_string()) {
      regex = v.get<std::string>();
      check_pattern(regex, who_ + ": field '" + key + "'");
      return;
    }
    if (!v.is_array()) raise(who_, ": field '", key, "' must be a list of module names or a regex string, got ",
                             v.type_name());
    for (const Json& item : v) {
      if (!item.is_string()) raise(who_, ": field '", key, "' must list strings, found ", item.type_name());
      list.push_back(item.get<std::string>());
    }
  }

  template <class Value>
  PatternList<Value> pattern(const char* key) const {
    PatternList<Value> out;
    if (!has(key)) return out;
    const Json& v = json_.at(key);
    if (!v.is_object()) raise(who_, ": field '", key, "' must be an object {pattern: value}, got ", v.type_name());
    for (const auto& [name, value] : v.items()) {
      check_pattern(name, who_ + ": field '" + key + "'");
      if constexpr (std::is_same_v<Value, Index>) out.emplace_back(name, as_integer(value, key));
      else out.emplace_back(name, as_number(value, key));
    }
    return out;
  }

  const Json& json() const { return json_; }

 private:
  double as_number(const Json& v, const char* key) const {
    if (!v.is_number()) raise(who_, ": field '", key, "' must be a number, got ", v.type_name());
    const double x = v.get<double>();
    if (!std::isfinite(x)) raise(who_, ": field '", key, "' must be finite, got ", x);
    return x;
  }
  Index as_integer(const Json& v, const char* key) const {
    if (v.is_number_integer()) return v.get<Index>();
    if (v.is_number_float()) {
      const double x = v.get<double>();
      if (std::isfinite(x) && x == std::floor(x) && std::abs(x) < 1e15) return static_cast<Index>(x);
    }
    raise(who_, ": field '", key, "' must be an integer, got ", v.dump());
  }

  const Json& json_;
  const std::string& who_;
};

inline constexpr std::pair<Structure, const char*> kStructureNames[] = {
    {Structure::Circulant, "circulant"}, {Structure::CirculantSingle, "circulant_single"},
    {Structure::SymToeplitz, "sym_toeplitz"}, {Structure::Toeplitz, "toeplitz"},
    {Structure::Kronecker, "kronecker"}, {Structure::LDR, "ldr"}};
inline constexpr std::pair<Activation, const char*> kActivationNames[] = {
    {Activation::GELU, "gelu"}, {Activation::ReLU, "relu"}, {Activation::Identity, "identity"}};

template <class Enum, std::size_t N>
const char* enum_name(const std::pair<Enum, const char*> (&names)[N], Enum value) {
  for (const auto& [v, name] : names)
    if (v == value) return name;
  return "?";
}

template <class Enum, std::size_t N>
Enum enum_value(const std::pair<Enum, const char*> (&names)[N], const std::string& text, const char* field,
                const std::string& who) {
  std::string options;
  for (const auto& [v, name] : names) {
    if (text == name) return v;
    options += options.empty() ? std::string("'") + name + "'" : std::string(", '") + name + "'";
  }
  raise(who, ": field '", field, "' must be one of ", options, ", got '", text, "'");
}

inline Json modules_json(const std::vector<std::string>& list, const std::string& regex) {
  if (!regex.empty()) return regex;
  return list;
}

}  // namespace detail

inline bool PeftConfig::targets(std::string_view name) const {
  if (!exclude_modules_regex.empty() ? detail::regex_full_match(exclude_modules_regex, name)
                                     : detail::list_matches(exclude_modules, name))
    return false;
  if (!target_modules_regex.empty()) return detail::regex_full_match(target_modules_regex, name);
  return detail::list_matches(target_modules, name);
}

inline Index PeftConfig::rank_for(std::string_view name) const {
  const auto it = detail::pattern_lookup(rank_pattern, name, "(.*\\.)?");
  return it == rank_pattern.end() ? r : it->second;
}

inline double PeftConfig::alpha_for(std::string_view name) const {
  const auto it = detail::pattern_lookup(alpha_pattern, name, "(.*\\.)?");
  const double fallback = peft_type == "LOKR" ? alpha : lora_alpha;
  return it == alpha_pattern.end() ? fallback : it->second;
}

inline Index PeftConfig::block_size_for(std::string_view name) const {
  // PEFT's C3A: the first key with re.match(rf".*\.{key}$", name), the key
  // not grouped (so "a|b" means ".*\.a" or "b$"); failing that, a key equal
  // to the whole name.
  for (const auto& [key, value] : block_size_pattern)
    if (ModulePattern(".*\\." + key + "$", "PeftConfig").match(name)) return value;
  for (const auto& [key, value] : block_size_pattern)
    if (key == name) return value;
  return block_size;
}

inline bool PeftConfig::is_feedforward(std::string_view name) const {
  if (!feedforward_modules_regex.empty()) return detail::regex_full_match(feedforward_modules_regex, name);
  return std::any_of(feedforward_modules.begin(), feedforward_modules.end(),
                     [&](const std::string& key) { return detail::ends_with(name, key); });
}

inline PeftConfig PeftConfig::parse(std::string_view text, const std::string& source) {
  const std::string who = "PeftConfig::parse('" + source + "')";
  auto json = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) detail::raise(who, ": not valid JSON");
  return from_json(json, source);
}

inline PeftConfig PeftConfig::from_json(const nlohmann::ordered_json& json, const std::string& source) {
  using detail::raise;
  const std::string who = "PeftConfig('" + source + "')";
  if (!json.is_object()) raise(who, ": the config must be a JSON object, got ", json.type_name());
  const detail::Fields f(json, who);
  PeftConfig c;
  c.raw = json;
  if (!f.has("peft_type")) raise(who, ": missing the required field 'peft_type'");
  c.peft_type = f.string("peft_type", "");
  const auto& types = supported_peft_types();
  if (std::find(types.begin(), types.end(), c.peft_type) == types.end()) {
    std::string list;
    for (const auto& t : types) list += (list.empty() ? "" : ", ") + t;
    raise(who, ": peft_type '", c.peft_type, "' is not supported; supported: ", list);
  }
  f.modules("target_modules", c.target_modules, c.target_modules_regex);
  f.modules("exclude_modules", c.exclude_modules, c.exclude_modules_regex);
  if (c.peft_type != "LORTA" && c.target_modules.empty() && c.target_modules_regex.empty())
    raise(who, ": 'target_modules' must name the adapted modules (a list or a regex)");

  c.r = f.integer("r", c.r);
  c.lora_alpha = f.number("lora_alpha", c.lora_alpha);
  c.use_rslora = f.boolean("use_rslora", c.use_rslora);
  c.lora_dropout = f.number("lora_dropout", c.lora_dropout);
  c.rank_pattern = f.pattern<Index>("rank_pattern");
  c.alpha_pattern = f.pattern<double>("alpha_pattern");
  c.bias = f.string("bias", c.bias);
  // PEFT trains base biases for "all" and for any "<tuner>_only" ("lora_only", "c3a_only").
  if (c.bias != "none" && c.bias != "all" && !c.bias.ends_with("_only"))
    raise(who, ": field 'bias' must be 'none', 'all' or '<type>_only' (e.g. 'lora_only', 'c3a_only'), got '", c.bias,
          "'");
  c.lora_bias = f.boolean("lora_bias", c.lora_bias);
  c.fan_in_fan_out = f.boolean("fan_in_fan_out", c.fan_in_fan_out);
  c.use_dora = f.boolean("use_dora", c.use_dora);
  f.modules("feedforward_modules", c.feedforward_modules, c.feedforward_modules_regex);
  c.block_size = f.integer("block_size", c.block_size);
  c.block_size_pattern = f.pattern<Index>("block_size_pattern");
  c.alpha = f.number("alpha", c.alpha);
  c.decompose_both = f.boolean("decompose_both", c.decompose_both);
  c.decompose_factor = f.integer("decompose_factor", c.decompose_factor);
  c.rank_dropout = f.number("rank_dropout", c.rank_dropout);
  c.rank_dropout_scale = f.boolean("rank_dropout_scale", c.rank_dropout_scale);
  c.module_dropout = f.number("module_dropout", c.module_dropout);
  if (c.peft_type == "LOKR" && f.boolean("use_effective_conv2d", false))
    raise(who, ": use_effective_conv2d applies to Conv2d layers, which are not supported");
  if (f.has("structure"))
    c.structure = detail::enum_value(detail::kStructureNames, f.string("structure", ""), "structure", who);
  c.rank = f.integer("rank", c.rank);
  if (f.has("activation"))
    c.activation = detail::enum_value(detail::kActivationNames, f.string("activation", ""), "activation", who);
  c.dropout = f.number("dropout", c.dropout);
  c.train_scale = f.boolean("train_scale", c.train_scale);
  c.train_bias = f.boolean("train_bias", c.train_bias);
  c.num_minis = f.integer("num_minis", c.num_minis);
  c.hidden_size = f.integer("hidden_size", c.hidden_size);
  c.heads = f.integer("heads", c.heads);
  c.layers = f.integer("layers", c.layers);
  c.matrix_types = f.integer("matrix_types", c.matrix_types);
  if (f.has("module_map")) {
    const auto& map = json.at("module_map");
    if (!map.is_object()) raise(who, ": field 'module_map' must be an object {module: [layer, matrix_type]}");
    for (const auto& [module, where] : map.items()) {
      if (!where.is_array() || where.size() != 2 || !where[0].is_number_integer() || !where[1].is_number_integer())
        raise(who, ": module_map['", module, "'] must be [layer, matrix_type] (two integers), got ", where.dump());
      c.module_map[module] = {where[0].get<Index>(), where[1].get<Index>()};
    }
  }
  c.validate(who);
  return c;
}

inline void PeftConfig::validate(const std::string& who) const {
  using detail::raise;
  // Values no adapter can be built from, refused here so that a bad file fails
  // at load_peft (naming the field), not later at wrap().
  const auto positive_int = [&](const char* field, Index v) {
    if (v < 1) raise(who, ": field '", field, "' must be an integer >= 1, got ", v);
  };
  const auto positive = [&](const char* field, double v) {
    if (!(v > 0.0) || !std::isfinite(v)) raise(who, ": field '", field, "' must be a finite value > 0, got ", v);
  };
  const auto probability = [&](const char* field, double v) {
    if (!(v >= 0.0 && v < 1.0)) raise(who, ": field '", field, "' must be in [0, 1), got ", v);
  };
  const auto patterns = [&](const char* field, const auto& list, auto check) {
    for (const auto& [key, value] : list) check((std::string(field) + "['" + key + "']").c_str(), value);
  };
  const std::string& t = peft_type;
  if (t == "LORA" || t == "LOKR" || t == "MELORA" || t == "LORTA") positive_int("r", r);
  if (t == "LORA" || t == "MELORA" || t == "LORTA") {
    positive("lora_alpha", lora_alpha);
    probability("lora_dropout", lora_dropout);
  }
  if (use_dora && t != "LORA")
    raise(who, ": field 'use_dora' = true applies to peft_type LORA only, got ", t);
  if (use_dora && lora_bias)  // PEFT's LoraConfig refuses the pair
    raise(who, ": lora_bias = true is not supported with use_dora = true (DoRA), as in PEFT; expected lora_bias = false");
  if (t == "LORA" || t == "LOKR") {
    patterns("rank_pattern", rank_pattern, positive_int);
    patterns("alpha_pattern", alpha_pattern, positive);
  }
  if (t == "C3A") {
    positive_int("block_size", block_size);
    patterns("block_size_pattern", block_size_pattern, positive_int);
  }
  if (t == "LOKR") {
    positive("alpha", alpha);
    probability("rank_dropout", rank_dropout);
    probability("module_dropout", module_dropout);
    if (decompose_factor != -1) positive_int("decompose_factor", decompose_factor);
  }
  if (t == "SURM" || t == "SURM_ADAPTER") {
    positive_int("rank", rank);
    positive("alpha", alpha);
  }
  if (t == "SURM_ADAPTER") probability("dropout", dropout);
  if (t == "MELORA") positive_int("num_minis", num_minis);
  if (t == "LORTA") {
    positive_int("hidden_size", hidden_size);
    positive_int("heads", heads);
    positive_int("layers", layers);
    positive_int("matrix_types", matrix_types);
  }
  if (peft_type == "LORTA" && module_map.empty())
    raise(who, ": a LORTA config needs 'module_map' {module: [layer, matrix_type]}");
  if (peft_type == "IA3" && target_modules_regex.empty() && feedforward_modules_regex.empty())
    for (const auto& ff : feedforward_modules)
      if (std::find(target_modules.begin(), target_modules.end(), ff) == target_modules.end())
        raise(who, ": feedforward module '", ff, "' must also be in target_modules (PEFT requires a subset)");
}

inline nlohmann::ordered_json PeftConfig::to_json() const {
  nlohmann::ordered_json j = raw.is_object() ? raw : nlohmann::ordered_json::object();
  j["peft_type"] = peft_type;
  if (peft_type != "LORTA") j["target_modules"] = detail::modules_json(target_modules, target_modules_regex);
  if (!exclude_modules.empty() || !exclude_modules_regex.empty())
    j["exclude_modules"] = detail::modules_json(exclude_modules, exclude_modules_regex);
  if (!j.contains("task_type")) j["task_type"] = nullptr;
  if (!j.contains("base_model_name_or_path")) j["base_model_name_or_path"] = nullptr;
  if (!j.contains("inference_mode")) j["inference_mode"] = true;
  const auto patterns = [](const auto& map) {
    nlohmann::ordered_json o = nlohmann::ordered_json::object();
    for (const auto& [k, v] : map) o[k] = v;
    return o;
  };
  if (peft_type == "LORA") {
    j["r"] = r;
    j["lora_alpha"] = lora_alpha;
    j["use_rslora"] = use_rslora;
    j["lora_dropout"] = lora_dropout;
    j["rank_pattern"] = patterns(rank_pattern);
    j["alpha_pattern"] = patterns(alpha_pattern);
    j["bias"] = bias;
    j["lora_bias"] = lora_bias;
    j["fan_in_fan_out"] = fan_in_fan_out;
    j["use_dora"] = use_dora;
  } else if (peft_type == "IA3") {
    j["feedforward_modules"] = detail::modules_json(feedforward_modules, feedforward_modules_regex);
    j["fan_in_fan_out"] = fan_in_fan_out;
  } else if (peft_type == "C3A") {
    j["block_size"] = block_size;
    j["block_size_pattern"] = patterns(block_size_pattern);
    j["bias"] = bias;
  } else if (peft_type == "LOKR") {
    j["r"] = r;
    j["alpha"] = alpha;
    j["rank_pattern"] = patterns(rank_pattern);
    j["alpha_pattern"] = patterns(alpha_pattern);
    j["decompose_both"] = decompose_both;
    j["decompose_factor"] = decompose_factor;
    j["rank_dropout"] = rank_dropout;
    j["rank_dropout_scale"] = rank_dropout_scale;
    j["module_dropout"] = module_dropout;
    j["use_effective_conv2d"] = false;
  } else if (peft_type == "SURM" || peft_type == "SURM_ADAPTER") {
    j["structure"] = detail::enum_name(detail::kStructureNames, structure);
    j["rank"] = rank;
    j["alpha"] = alpha;
    if (peft_type == "SURM_ADAPTER") {
      j["activation"] = detail::enum_name(detail::kActivationNames, activation);
      j["dropout"] = dropout;
    }
  } else if (peft_type == "RED") {
    j["train_scale"] = train_scale;
    j["train_bias"] = train_bias;
  } else if (peft_type == "MELORA") {
    j["r"] = r;
    j["num_minis"] = num_minis;
    j["lora_alpha"] = lora_alpha;
    j["lora_dropout"] = lora_dropout;
  } else if (peft_type == "LORTA") {
    j["r"] = r;
    j["lora_alpha"] = lora_alpha;
    j["use_rslora"] = use_rslora;
    j["lora_dropout"] = lora_dropout;
    j["hidden_size"] = hidden_size;
    j["heads"] = heads;
    j["layers"] = layers;
    j["matrix_types"] = matrix_types;
    nlohmann::ordered_json map = nlohmann::ordered_json::object();
    for (const auto& [module, where] : module_map) map[module] = {where.first, where.second};
    j["module_map"] = map;
  }
  return j;
}

}  // namespace peft::io
