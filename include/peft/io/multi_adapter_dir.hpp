#pragma once
// Adapter directories and MultiAdapted: load a directory's adapter for one
// module onto a layer under a name (PEFT's load_adapter(dir, adapter_name)),
// or swap the weights of an adapter already there for a directory's, in place
// (PEFT's hotswap_adapter): a server loads new adapters without rebuilding
// the layer, reallocating its buffers or re-planning its FFTs.

#include <any>
#include <string>
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

}  // namespace peft::io
