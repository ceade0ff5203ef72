// peft-inspect DIR: what an adapter directory holds, before you load it into
// a model. Prints the type and key config fields, then one row per module:
// its tensors (shape, dtype), parameter count, the layer shape the tensors
// imply, and ‖ΔW‖_F (Frobenius norm of the dense update the adapter merges).
// Exit status 0 when the directory loads, 1 with the loader's message if not.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <peft/peft.hpp>

namespace {

std::string shape_of(const peft::io::Tensor& t) {
  std::string s = "[";
  for (std::size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

std::string key_fields(const peft::io::PeftConfig& c) {
  std::ostringstream os;
  const std::string& t = c.peft_type;
  if (t == "LORA") {
    os << "r=" << c.r << " lora_alpha=" << c.lora_alpha << (c.use_rslora ? " rslora" : "") << " bias=" << c.bias
       << (c.lora_bias ? " lora_bias" : "");
    if (!c.rank_pattern.empty()) os << " rank_pattern(" << c.rank_pattern.size() << ")";
    if (!c.alpha_pattern.empty()) os << " alpha_pattern(" << c.alpha_pattern.size() << ")";
  } else if (t == "LOKR") {
    os << "r=" << c.r << " alpha=" << c.alpha << " decompose_both=" << c.decompose_both
       << " decompose_factor=" << c.decompose_factor;
  } else if (t == "C3A") {
    os << "block_size=" << c.block_size;
  } else if (t == "IA3") {
    os << "feedforward_modules=";
    if (!c.feedforward_modules_regex.empty()) os << "/" << c.feedforward_modules_regex << "/";
    for (const auto& m : c.feedforward_modules) os << m << " ";
  } else if (t == "SURM" || t == "SURM_ADAPTER") {
    os << "structure=" << peft::io::detail::enum_name(peft::io::detail::kStructureNames, c.structure)
       << " rank=" << c.rank << " alpha=" << c.alpha;
  } else if (t == "MELORA") {
    os << "r=" << c.r << " num_minis=" << c.num_minis << " lora_alpha=" << c.lora_alpha;
  } else if (t == "LORTA") {
    os << "r=" << c.r << " hidden_size=" << c.hidden_size << " heads=" << c.heads << " layers=" << c.layers
       << " matrix_types=" << c.matrix_types;
  } else if (t == "RED") {
    os << "train_scale=" << c.train_scale << " train_bias=" << c.train_bias;
  }
  return os.str();
}

int inspect(const std::string& dir) {
  const auto adapters = peft::io::load_peft<double>(dir);
  const auto& config = adapters.config();
  std::cout << dir << ": " << config.peft_type << "  " << key_fields(config) << "\n";
  std::cout << "modules: " << adapters.modules().size() << "\n\n";
  std::cout << "| module | tensors | params | layer (in -> out) | ||dW||_F |\n|---|---|---:|---|---:|\n";
  peft::Index total = 0;
  for (const auto& module : adapters.modules()) {
    std::string tensors;
    peft::Index params = 0;
    const std::string prefix = std::string(peft::io::kPeftKeyPrefix) + module + ".";
    for (const auto& [key, tensor] : adapters.tensors()) {
      if (!key.starts_with(prefix)) continue;
      tensors += (tensors.empty() ? "" : ", ") + key.substr(prefix.size()) + " " + shape_of(tensor) + " " +
                 tensor.dtype;
      params += tensor.numel();
    }
    std::string layer = "?", norm = "-";
    if (const auto shape = adapters.layer_shape(module)) {
      layer = std::to_string(shape->first) + " -> " + std::to_string(shape->second);
      auto wrapped = adapters.wrap(module, peft::Linear<double>(peft::Matrix<double>::Zero(shape->second, shape->first)));
      if (wrapped.has_delta_weight()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6g", wrapped.delta_weight().norm());
        norm = buf;
      }
      if (config.peft_type == "LORTA") params = 0;  // counted once below
    }
    total += params;
    std::cout << "| " << module << " | " << (tensors.empty() ? "(shared)" : tensors) << " | " << params << " | "
              << layer << " | " << norm << " |\n";
  }
  if (const auto factors = adapters.lorta_factors()) {
    std::cout << "\nshared LoRTA factors: " << factors->num_params() << " params\n";
    total += factors->num_params();
  }
  std::cout << "\ntotal trainable parameters: " << total << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cerr << "usage: peft-inspect DIR\n"
                 "  DIR holds adapter_config.json and adapter_model.safetensors (Hugging Face PEFT layout)\n";
    return argc == 2 ? 0 : 2;
  }
  try {
    return inspect(argv[1]);
  } catch (const std::exception& e) {
    std::cerr << "peft-inspect: " << e.what() << "\n";
    return 1;
  }
}
