// The C++ half of llama_gguf.py: LoRA layers on a Hugging Face LLaMA model's
// projections, written with save_gguf_lora for llama.cpp to apply, and the
// same layers merged by us into the model's weights.
//   gguf_lora_driver WORKDIR SEED HEADS KV_HEADS
// reads WORKDIR/base_hf.safetensors (model.layers.<i>.{self_attn,mlp}.*.weight),
// writes WORKDIR/adapter.gguf and WORKDIR/merged_hf.safetensors (every tensor,
// the adapted ones merged), and prints one line per adapted module.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <peft/peft.hpp>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: gguf_lora_driver WORKDIR SEED HEADS KV_HEADS\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  peft::Rng rng(std::stoull(argv[2]));
  const peft::Index heads = std::stol(argv[3]), kv_heads = std::stol(argv[4]);
  try {
    const auto model = peft::io::read_safetensors(dir / "base_hf.safetensors");
    std::vector<std::string> modules;
    for (const auto& [key, tensor] : model)
      if (key.starts_with("model.layers.") && key.ends_with("_proj.weight") && rng.uniform() < 0.7)
        modules.push_back(key.substr(0, key.size() - 7));
    if (modules.empty()) modules.push_back("model.layers.0.self_attn.q_proj");

    std::vector<peft::Adapted<peft::LoRA<float>>> layers;
    for (const auto& m : modules) {
      peft::Linear<float> base(model.at(m + ".weight").to_matrix<float>());
      // Each module its own rank, alpha and scaling rule: the file has one alpha.
      const peft::LoRAConfig config{.r = 1 + static_cast<peft::Index>(rng.uniform() * 6),
                                    .alpha = 0.5 + 8 * rng.uniform(),
                                    .rslora = rng.uniform() < 0.4,
                                    .seed = rng.next()};
      const auto d_in = base.in_features(), d_out = base.out_features();
      layers.emplace_back(std::move(base), peft::LoRA<float>(d_in, d_out, config));
      peft::init::normal(layers.back().adapter().B(), 0.3, rng);  // B = 0 at init: ΔW would be 0
      std::printf("%s r=%ld alpha=%.4g%s\n", m.c_str(), static_cast<long>(config.r), config.alpha,
                  config.rslora ? " rslora" : "");
    }
    std::vector<peft::io::SavedModule<float>> saved;
    for (std::size_t i = 0; i < modules.size(); ++i) saved.emplace_back(modules[i], layers[i]);
    peft::io::save_gguf_lora(dir / "adapter.gguf", saved, peft::io::llama_tensors(heads, kv_heads),
                             {.name = "peft-cpp live check"});

    peft::io::TensorMap merged = model.tensors();
    for (std::size_t i = 0; i < modules.size(); ++i) {
      layers[i].merge();
      const auto& W = layers[i].base().weight();
      merged.at(modules[i] + ".weight") = peft::io::Tensor::from(W, {W.rows(), W.cols()}, "F32");
    }
    peft::io::write_safetensors(dir / "merged_hf.safetensors", merged);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gguf_lora_driver: %s\n", e.what());
    return 1;
  }
  return 0;
}
