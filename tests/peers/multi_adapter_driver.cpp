// The C++ half of peft_multi_adapter.py (MultiAdapted against PEFT's
// multi-adapter model): reads WORKDIR/base.safetensors ("<module>.weight",
// "<module>.bias" for modules q and v), loads the tree PEFT saved in
// WORKDIR/peft_tree onto MultiAdapted layers, adds the same weighted
// combinations PEFT added, and writes every adapter's ΔW per module to
// WORKDIR/ours.safetensors ("<adapter>/<module>", F64). It also saves the
// loaded adapters as a tree of its own in WORKDIR/our_tree for PEFT to load.
//
// usage: multi_adapter_driver WORKDIR
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <peft/core/multi_adapted.hpp>
#include <peft/io/multi_adapter_dir.hpp>
#include <peft/io/safetensors.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: multi_adapter_driver WORKDIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  try {
    using peft::Combination;
    const auto base = peft::io::read_safetensors(dir / "base.safetensors");
    const std::vector<std::string> modules{"q", "v"};
    std::vector<peft::MultiAdapted<double>> layers;
    for (const auto& m : modules)
      layers.emplace_back(peft::Linear<double>(base.at(m + ".weight").to_matrix<double>(),
                                               base.at(m + ".bias").to_matrix<double>().reshaped()));
    std::vector<peft::io::MultiModule<double>> tree{{"q", &layers[0]}, {"v", &layers[1]}};
    const auto names = peft::io::load_peft_tree<double>(dir / "peft_tree", tree);
    for (const auto& n : names) std::printf("loaded %s\n", n.c_str());
    peft::io::save_peft_tree<double>(dir / "our_tree", tree, {.dtype = "F64"});

    for (auto& layer : layers) {  // as peft_multi_adapter.py's combinations
      layer.add_weighted_adapter("cat", {"default", "second"}, {0.7, -1.3}, Combination::Cat);
      layer.add_weighted_adapter("linear", {"default", "third"}, {0.5, -2.0}, Combination::Linear);
      layer.add_weighted_adapter("svd", {"default", "second", "third"}, {1.0, 0.5, -0.75}, Combination::SVD, 2);
      layer.add_weighted_adapter("single", {"second"}, {-0.4}, Combination::Cat);
    }
    peft::io::TensorMap out;
    for (std::size_t i = 0; i < layers.size(); ++i)
      for (const auto& name : layers[i].adapter_names()) {
        const peft::Matrix<double> delta = layers[i].adapter<peft::LoRA<double>>(name).delta_weight();
        out[name + "/" + modules[i]] = peft::io::Tensor::from(delta, {delta.rows(), delta.cols()}, "F64");
      }
    peft::io::write_safetensors(dir / "ours.safetensors", out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "multi_adapter_driver: %s\n", e.what());
    return 1;
  }
  return 0;
}
