#pragma once
// Adapter directories and MultiAdapted: load a directory's adapter for one
// module onto a layer under a name (PEFT's load_adapter(dir, adapter_name)),
// or swap the weights of an adapter already there for a directory's, in place
// (PEFT's hotswap_adapter): a server loads new adapters without rebuilding
// the layer, reallocating its buffers or re-planning its FFTs. And save or
// load every adapter of a model's layers as one directory tree, laid out as
// PEFT's save_pretrained writes several adapters: "default" at the root, any
// other adapter in a subfolder named after it.

#include <algorithm>
#include <any>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/multi_adapted.hpp>
#include <peft/io/peft_dir.hpp>

namespace peft::io {

namespace detail {

/// `loaded`'s adapter for `module`, sized for `layer`, with the saved tensors, handed to visit(adapter).
template <class T, class Visit>
decltype(auto) with_loaded_adapter(const MultiAdapted<T>& layer, const PeftAdapters<T>& loaded,
                                   const std::string& module, const char* who, Visit&& visit) {
  const std::string where = std::string(who) + ": " + loaded.source() + ", module '" + module + "'";
  PEFT_REQUIRE(loaded.contains(module), where, ": the directory has no adapter for this module");
  PEFT_REQUIRE(!loaded.saved_bias(module), where,
               ": the directory trains the base layer's bias (bias = \"", loaded.config().bias,
               "\"), which a layer shared by several adapters cannot take; expected bias = \"none\"");
  const PeftConfig& config = loaded.config();
  const std::string prefix = std::string(kPeftKeyPrefix) + module + ".";
  return with_adapter<T>(config, module, layer.in_features(), layer.out_features(), loaded.lorta_factors(),
                         [&](auto adapter) -> decltype(auto) {
                           if (config.peft_type != "LORTA")  // LoRTA's shared factors are loaded already
                             for (auto p : adapter.parameters()) {
                               const std::string key = prefix + peft_tensor_name(config.peft_type, p.name);
                               PEFT_REQUIRE(loaded.tensors().contains(key), where, ": missing tensor '", key, "'");
                               load_parameter(loaded.tensors().at(key), key, p, where, false);
                             }
                           return visit(std::move(adapter));
                         });
}

}  // namespace detail

/// Adds the adapter `loaded` holds for `module` to `layer` under `name`
/// (inactive until set_adapter). Throws peft::Error for a module the directory
/// lacks, a shape that does not fit the layer, a taken name, or a directory
/// that trains the base bias.
template <class T>
void add_adapter(MultiAdapted<T>& layer, const std::string& name, const PeftAdapters<T>& loaded,
                 const std::string& module) {
  detail::with_loaded_adapter(layer, loaded, module, "add_adapter", [&](auto adapter) {
    layer.add_adapter(name, std::move(adapter));
  });
}

/// Replaces the weights of `layer`'s adapter `name` with those `loaded` holds
/// for `module`, copied into the adapter's own storage: nothing in the layer
/// is reallocated or re-planned, and a forward after it uses the new weights.
/// The directory's adapter must be of the same kind and configuration (rank,
/// alpha, structure, ...). All or nothing: the file is read and checked in
/// full before anything is copied. Throws peft::Error otherwise, naming the
/// fields that differ.
template <class T>
void hotswap_adapter(MultiAdapted<T>& layer, const std::string& name, const PeftAdapters<T>& loaded,
                     const std::string& module) {
  (void)layer.index_of(name);  // an unknown name fails here, naming the adapters there are
  detail::with_loaded_adapter(layer, loaded, module, "hotswap_adapter", [&](auto fresh) {
    using A = decltype(fresh);
    const std::string who = "hotswap_adapter: '" + name + "' from " + loaded.source() + ", module '" + module + "'";
    A* current = layer.template find_adapter<A>(name);
    PEFT_REQUIRE(current != nullptr, who, ": the layer's adapter is of another kind than the directory's ",
                 loaded.config().peft_type, " adapter");
    auto config_of = [&](const A& a) {
      std::any config;
      if constexpr (requires { a.config(); }) config = a.config();
      else config = a.factors().config();  // LoRTA: its shared factors'
      return detail::describe_adapter(config, module, who);
    };
    const std::string differences = detail::config_differences(config_of(fresh), config_of(*current));
    PEFT_REQUIRE(differences.empty(), who, ": the configurations differ (", differences,
                 "); expected the same kind, sizes and scaling");
    auto to = current->parameters();
    const auto from = fresh.parameters();
    PEFT_REQUIRE(to.size() == from.size(), who, ": the adapters have ", to.size(), " and ", from.size(), " tensors");
    for (std::size_t i = 0; i < to.size(); ++i)
      PEFT_REQUIRE(to[i].name == from[i].name && to[i].value.rows() == from[i].value.rows() &&
                       to[i].value.cols() == from[i].value.cols(),
                   who, ": tensor '", from[i].name, "' does not fit the layer's '", to[i].name, "'");
    for (std::size_t i = 0; i < to.size(); ++i) to[i].value = from[i].value;
  });
}

/// Where PEFT keeps adapter `name` of a tree saved in `dir`: the root for
/// "default", dir/name for any other.
inline std::filesystem::path adapter_directory(const std::filesystem::path& dir, const std::string& name) {
  return name == "default" ? dir : dir / name;
}

/// One module of a model with several adapters: its name and its layer.
template <class T>
struct MultiModule {
  std::string name;          ///< the module's name in the model, e.g. "model.layers.0.q_proj"
  MultiAdapted<T>* layer{};  ///< its layer (not owned)
};

/// Saves every adapter of the layers as one tree (adapter_directory() per
/// adapter name): each directory holds the modules that have that adapter,
/// with the config peft_config_of() derives from them. Throws peft::Error for
/// no modules, a null layer, an adapter name that is not a plain folder name,
/// or what save_peft refuses.
template <class T>
void save_peft_tree(const std::filesystem::path& dir, const std::vector<MultiModule<T>>& modules,
                    const SaveOptions& options = {}) {
  const std::string who = "save_peft_tree('" + dir.string() + "')";
  PEFT_REQUIRE(!modules.empty(), who, ": no modules to save");
  std::vector<std::string> names;  // every adapter name, first seen first
  for (const auto& m : modules) {
    PEFT_REQUIRE(m.layer != nullptr, who, ": module '", m.name, "' has no layer");
    for (const auto& n : m.layer->adapter_names())
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  for (const auto& n : names) {
    PEFT_REQUIRE(n != "." && n != ".." && n.find_first_of("/\\") == std::string::npos, who, ": adapter name '", n,
                 "' cannot be a folder name; expected no '/', '\\', '.' or '..'");
    std::vector<SavedModule<T>> saved;
    for (const auto& m : modules) {
      const auto held = m.layer->adapter_names();
      if (std::find(held.begin(), held.end(), n) != held.end()) saved.emplace_back(m.name, *m.layer, n);
    }
    save_peft(adapter_directory(dir, n), peft_config_of(saved, who), saved, options);
  }
}

/// Loads a tree save_peft_tree (or PEFT's save_pretrained) wrote: the root
/// as "default" if it holds an adapter, and each subfolder holding one under
/// the folder's name, onto the modules' layers (io::add_adapter). Returns
/// the names loaded, sorted with "default" first. Throws peft::Error for a
/// directory without adapters, a module a directory adapts that `modules`
/// lacks, or what add_adapter refuses.
template <class T>
std::vector<std::string> load_peft_tree(const std::filesystem::path& dir, const std::vector<MultiModule<T>>& modules,
                                        LoadOptions options = {}) {
  const std::string who = "load_peft_tree('" + dir.string() + "')";
  std::vector<std::string> names;
  if (std::filesystem::exists(dir / "adapter_config.json")) names.push_back("default");
  std::vector<std::string> folders;
  PEFT_REQUIRE(std::filesystem::is_directory(dir), who, ": not a directory");
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "adapter_config.json"))
      folders.push_back(entry.path().filename().string());
  std::sort(folders.begin(), folders.end());
  names.insert(names.end(), folders.begin(), folders.end());
  PEFT_REQUIRE(!names.empty(), who, ": no adapter_config.json at the root or in a subfolder");
  for (const auto& n : names) {
    const PeftAdapters<T> loaded = load_peft<T>(adapter_directory(dir, n), options);
    for (const auto& module : loaded.modules()) {
      const auto m = std::find_if(modules.begin(), modules.end(), [&](const auto& x) { return x.name == module; });
      PEFT_REQUIRE(m != modules.end() && m->layer != nullptr, who, ": adapter '", n, "' adapts module '", module,
                   "', which is not among the modules given");
      add_adapter(*m->layer, n, loaded, module);
    }
  }
  return names;
}

}  // namespace peft::io
