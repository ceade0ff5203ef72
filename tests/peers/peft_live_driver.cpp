// The C++ side of live_interop.py: one process runs every case of a manifest.
//   peft_live_driver MANIFEST.json
// MANIFEST: {"cases": [{"dir": D, "direction": "load" | "save", "dtype": "F64" | "F32"}, ...]}
//   load: D/adapter is PEFT's save_pretrained output, D/inputs.safetensors holds
//         per module "<m>/W", "<m>/b" (the original base bias, if any), "<m>/X"
//         and "<m>/G" (upstream gradient). For every module load_peft finds, we
//         wrap, forward X, backward G, then merge, and write D/ours.safetensors:
//         "<m>/Y", "<m>/dX", "<m>/value/<p>", "<m>/grad/<p>" (every parameter
//         the layer reports), "<m>/merged_W", "<m>/merged_b".
//   save: D/spec.json {"config": adapter_config fields, "modules": [names],
//         "seed": s} and D/inputs.safetensors ("<m>/W", "<m>/b", "<m>/X"). Every
//         module the config targets gets a randomly initialised adapter built
//         with our typed API (and, for bias != "none", a new random base bias);
//         save_peft writes D/adapter, and D/ours.safetensors gets "<m>/Y",
//         "<m>/value/<p>", "<m>/merged_W", "<m>/merged_b".
// Both write the adapted module names as the metadata "modules" (a JSON list).
// A case that throws writes D/error.txt and the driver goes on to the next.
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <peft/peft.hpp>

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using peft::Index;

namespace {

template <class T>
struct Case {
  fs::path dir;
  std::string dtype;  // of the tensors we write: "F64" or "F32"
  peft::io::Safetensors inputs;
  peft::io::TensorMap out;
  ordered_json modules = ordered_json::array();

  template <class Derived>
  void put(const std::string& key, const Eigen::DenseBase<Derived>& m, std::vector<std::int64_t> shape = {}) {
    out.emplace(key, peft::io::Tensor::from(m, std::move(shape), dtype));
  }
  bool has(const std::string& key) const { return inputs.contains(key); }
  peft::Matrix<T> matrix(const std::string& key) const { return inputs.at(key).template to_matrix<T>(); }
  peft::Vector<T> vector(const std::string& key) const { return inputs.at(key).template to_vector<T>(); }
  peft::Linear<T> base(const std::string& m) const {
    return peft::Linear<T>(matrix(m + "/W"), has(m + "/b") ? vector(m + "/b") : peft::Vector<T>());
  }

  void put_parameters(const std::string& m, peft::AdaptedLayer<T>& layer, bool grads) {
    for (const auto& p : layer.parameters()) {
      const std::vector<std::int64_t> shape(p.shape.begin(), p.shape.end());
      put(m + "/value/" + std::string(p.name), p.value, shape);
      if (grads) put(m + "/grad/" + std::string(p.name), p.grad, shape);
    }
  }
  // The merged base, where the adapter can merge (PEFT merges all four types;
  // neither merges lora_bias into a base without bias: then none is written).
  void put_merged(const std::string& m, peft::AdaptedLayer<T>& layer) {
    if (!layer.mergeable()) return;
    try {
      layer.merge();
    } catch (const peft::Error&) {
      return;
    }
    put(m + "/merged_W", layer.base().weight());
    if (layer.base().has_bias()) put(m + "/merged_b", layer.base().bias().transpose(), {layer.out_features()});
  }
  void finish() const {
    peft::io::write_safetensors(dir / "ours.safetensors", out, {{"modules", modules.dump()}});
  }
};

// PEFT -> us: load PEFT's directory, run each module.
template <class T>
void run_load(Case<T>& c) {
  const auto adapters = peft::io::load_peft<T>(c.dir / "adapter");
  for (const auto& m : adapters.modules()) {
    c.modules.push_back(m);
    auto layer = adapters.wrap(m, c.base(m));
    layer.set_training(false);  // PEFT's side runs in eval mode; dropout is 0 anyway
    const peft::Matrix<T> X = c.matrix(m + "/X"), G = c.matrix(m + "/G");
    layer.zero_grad();
    c.put(m + "/Y", layer.forward(X));
    c.put(m + "/dX", layer.backward(G));
    c.put_parameters(m, layer, /*grads=*/true);
    c.put_merged(m, layer);
  }
}

// A randomly initialised adapter for module `name` of type `config.peft_type`,
// with the values the config gives that module (what PEFT will build on load).
template <class T>
peft::AdaptedLayer<T> make_random(const peft::io::PeftConfig& config, const std::string& name, peft::Linear<T> base,
                                  std::uint64_t seed) {
  const Index d_in = base.in_features(), d_out = base.out_features();
  const std::string& type = config.peft_type;
  auto wrap = [&](auto adapter) {
    return peft::AdaptedLayer<T>(peft::Adapted<decltype(adapter)>(std::move(base), std::move(adapter)), type);
  };
  if (type == "LORA" && config.use_dora) {
    peft::DoRA<T> dora(d_in, d_out, {.r = config.rank_for(name), .alpha = config.alpha_for(name),
                                     .rslora = config.use_rslora, .dropout = config.lora_dropout,
                                     .init = peft::LoRAInit::None, .seed = seed});
    // A magnitude unlike ‖W + s·B·A‖ (PEFT's init), so that c = m / ‖·‖ is not 1.
    peft::Rng rng(seed * 7919 + 2);
    peft::init::normal(dora.magnitude(), 1.0, rng);
    return wrap(std::move(dora));
  }
  if (type == "LORA")
    return wrap(peft::LoRA<T>(d_in, d_out, {.r = config.rank_for(name), .alpha = config.alpha_for(name),
                                            .rslora = config.use_rslora, .dropout = config.lora_dropout,
                                            .init = peft::LoRAInit::None, .seed = seed,
                                            .lora_bias = config.lora_bias}));
  if (type == "IA3")
    return wrap(peft::IA3<T>(d_in, d_out, {.feedforward = config.is_feedforward(name), .init_ones = false, .seed = seed}));
  if (type == "C3A")
    return wrap(peft::C3A<T>(d_in, d_out, {.block_size = config.block_size_for(name),
                                           .init = peft::C3AInit::Gaussian, .seed = seed}));
  if (type == "LOKR")
    return wrap(peft::LoKr<T>(d_in, d_out, {.r = config.rank_for(name), .alpha = config.alpha_for(name),
                                            .decompose_both = config.decompose_both,
                                            .decompose_factor = config.decompose_factor,
                                            .rank_dropout = config.rank_dropout,
                                            .rank_dropout_scale = config.rank_dropout_scale,
                                            .module_dropout = config.module_dropout,
                                            .init = peft::LoKrInit::Random, .seed = seed}));
  throw std::runtime_error("peft_live_driver: no random constructor for peft_type " + type);
}

// us -> PEFT: build random adapters, save_peft them, record what they compute.
template <class T>
void run_save(Case<T>& c) {
  std::ifstream in(c.dir / "spec.json");
  const ordered_json spec = ordered_json::parse(in);
  peft::io::PeftConfig config = peft::io::PeftConfig::from_json(spec.at("config"), (c.dir / "spec.json").string());
  config.raw = ordered_json::object();  // adapter_config.json is then written from our fields alone
  std::uint64_t seed = spec.at("seed").get<std::uint64_t>();
  std::vector<std::pair<std::string, peft::AdaptedLayer<T>>> layers;
  for (const auto& name_json : spec.at("modules")) {
    const std::string m = name_json.get<std::string>();
    if (!config.targets(m)) continue;
    auto layer = make_random<T>(config, m, c.base(m), ++seed);
    // bias = "all" / "lora_only": the base bias is trained, so it is saved; give it new values.
    if (config.bias != "none" && layer.base().has_bias()) {
      layer.set_base_bias_trainable(true);
      peft::Rng rng(seed * 7919 + 1);
      peft::init::normal(layer.base().bias(), 1.0, rng);
    }
    layer.set_training(false);
    layers.emplace_back(m, std::move(layer));
  }
  std::vector<peft::io::SavedModule<T>> saved;
  for (const auto& [m, layer] : layers) saved.emplace_back(m, layer);
  peft::io::save_peft(c.dir / "adapter", config, saved, peft::io::SaveOptions{.dtype = c.dtype});
  for (auto& [m, layer] : layers) {
    c.modules.push_back(m);
    c.put(m + "/Y", layer.forward(c.matrix(m + "/X")));
    c.put_parameters(m, layer, /*grads=*/false);
    c.put_merged(m, layer);
  }
}

template <class T>
void run_case(const fs::path& dir, const std::string& direction, const std::string& dtype) {
  Case<T> c{dir, dtype, peft::io::read_safetensors(dir / "inputs.safetensors"), {}};
  if (direction == "load") run_load(c);
  else if (direction == "save") run_save(c);
  else throw std::runtime_error("peft_live_driver: unknown direction '" + direction + "'");
  c.finish();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: peft_live_driver MANIFEST.json\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  const ordered_json manifest = ordered_json::parse(in);
  int failed = 0;
  for (const auto& entry : manifest.at("cases")) {
    const fs::path dir = entry.at("dir").get<std::string>();
    const std::string direction = entry.at("direction").get<std::string>();
    const std::string dtype = entry.at("dtype").get<std::string>();
    try {
      if (dtype == "F64") run_case<double>(dir, direction, dtype);
      else run_case<float>(dir, direction, dtype);
    } catch (const std::exception& e) {
      ++failed;
      std::ofstream(dir / "error.txt") << e.what() << "\n";
    }
  }
  std::cout << "peft_live_driver: " << manifest.at("cases").size() << " cases, " << failed << " threw\n";
  return 0;  // the orchestrator judges every case, errors included
}
