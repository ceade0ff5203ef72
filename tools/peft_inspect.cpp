// peft-inspect DIR | FILE.gguf: what an adapter directory (or a llama.cpp
// GGUF file, see inspect_gguf) holds, before you load it into
// a model. Prints the type and key config fields, then one row per module:
// its tensors (shape, dtype), parameter count, the layer shape the tensors
// imply, and ‖ΔW‖_F (Frobenius norm of the dense update the adapter merges).
// Exit status 0 when the directory loads, 1 with the loader's message if not
// (NaN or Inf in a tensor included). --allow-non-finite prints such a
// directory anyway, with a warning per module, and still exits 1.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <peft/peft.hpp>

namespace {

std::string shape_of(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
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

int inspect(const std::string& dir, bool allow_non_finite) {
  const auto adapters = peft::io::load_peft<double>(dir, {.allow_non_finite = allow_non_finite});
  const auto& config = adapters.config();
  std::ostringstream out;  // printed once the whole directory has loaded
  out << dir << ": " << config.peft_type << "  " << key_fields(config) << "\n";
  out << "modules: " << adapters.modules().size() << "\n\n";
  out << "| module | tensors | params | layer (in -> out) | ||dW||_F |\n|---|---|---:|---|---:|\n";
  peft::Index total = 0;
  std::vector<std::string> non_finite;
  for (const auto& module : adapters.modules()) {
    std::string tensors;
    peft::Index params = 0;
    const std::string prefix = std::string(peft::io::kPeftKeyPrefix) + module + ".";
    for (const auto& [key, tensor] : adapters.tensors()) {
      if (!key.starts_with(prefix)) continue;
      tensors += (tensors.empty() ? "" : ", ") + key.substr(prefix.size()) + " " + shape_of(tensor.shape) + " " +
                 tensor.dtype;
      params += tensor.numel();
      if (!tensor.to_matrix<double>().allFinite()) non_finite.push_back(key);
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
    out << "| " << module << " | " << (tensors.empty() ? "(shared)" : tensors) << " | " << params << " | "
              << layer << " | " << norm << " |\n";
  }
  if (const auto factors = adapters.lorta_factors()) {
    out << "\nshared LoRTA factors: " << factors->num_params() << " params\n";
    total += factors->num_params();
  }
  out << "\ntotal trainable parameters: " << total << "\n";
  std::cout << out.str();
  for (const auto& key : non_finite) std::cerr << "peft-inspect: warning: tensor '" << key << "' holds NaN or Inf\n";
  return non_finite.empty() ? 0 : 1;
}

/// A GGUF file: its metadata, its tensors, and for a LoRA adapter one row per
/// adapted tensor with ‖ΔW‖_F as llama.cpp applies it (alpha / r · B · A).
int inspect_gguf(const std::string& path, bool allow_non_finite) {
  const auto g = peft::io::read_gguf(path);
  std::ostringstream out;
  out << path << ": GGUF v" << g.version << ", " << g.metadata.size() << " metadata entries, " << g.tensors.size()
      << " tensors\n\n";
  for (const auto& e : g.metadata) {
    std::string value = e.value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (value.size() > 80) value = value.substr(0, 77) + "...";
    out << "  " << e.key << " = " << value << "\n";
  }
  const auto* type = g.find("adapter.type");
  const auto* alpha = g.find("adapter.lora.alpha");
  std::vector<std::string> non_finite;
  if (type && type->value == "lora" && alpha && alpha->value.is_number()) {
    out << "\n| tensor | lora_a | lora_b | r | alpha / r | ||dW||_F |\n|---|---|---|---:|---:|---:|\n";
    peft::Index total = 0;
    for (const auto& t : g.tensors) {
      if (!t.name.ends_with(".lora_a")) continue;
      const std::string base = t.name.substr(0, t.name.size() - 7);
      const auto* b = g.tensor(base + ".lora_b");
      std::string norm = "-", scale = "-";
      if (b && t.bytes && b->bytes && t.shape.size() == 2 && b->shape.size() == 2 && b->shape[1] == t.shape[0]) {
        const auto A = g.to_matrix<double>(t), B = g.to_matrix<double>(*b);
        if (!A.allFinite() || !B.allFinite()) non_finite.push_back(base);
        const double s = alpha->value.get<double>() / static_cast<double>(A.rows());
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.6g", s);
        scale = buf;
        std::snprintf(buf, sizeof buf, "%.6g", s * (B * A).norm());
        norm = buf;
        total += A.size() + B.size();
      }
      out << "| " << base << " | " << shape_of(t.shape) << " | " << (b ? shape_of(b->shape) : "missing") << " | " << t.shape[0] << " | "
          << scale << " | " << norm << " |\n";
    }
    out << "\ntotal LoRA parameters: " << total << "\n";
  } else {
    out << "\n";
    for (const auto& t : g.tensors) {
      out << "  " << t.name << " [";
      for (std::size_t i = 0; i < t.shape.size(); ++i) out << (i ? ", " : "") << t.shape[i];
      out << "] ggml type " << t.ggml_type << "\n";
    }
  }
  if (!non_finite.empty() && !allow_non_finite) {
    std::cerr << "peft-inspect: '" << path << "': tensor pair '" << non_finite.front()
              << "' holds NaN or Inf (--allow-non-finite prints it anyway)\n";
    return 1;
  }
  std::cout << out.str();
  for (const auto& key : non_finite) std::cerr << "peft-inspect: warning: tensor pair '" << key << "' holds NaN or Inf\n";
  return non_finite.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool help = args.size() == 1 && (args[0] == "--help" || args[0] == "-h");
  const bool allow_non_finite = !args.empty() && args[0] == "--allow-non-finite";
  if (help || args.size() != 1u + allow_non_finite) {
    std::cerr << "usage: peft-inspect [--allow-non-finite] DIR | FILE.gguf\n"
                 "  DIR holds adapter_config.json and adapter_model.safetensors (Hugging Face PEFT layout)\n"
                 "  FILE.gguf is a llama.cpp GGUF file (a LoRA adapter: one row per adapted tensor)\n"
                 "  --allow-non-finite  print a directory whose tensors hold NaN or Inf (exit status 1)\n";
    return help ? 0 : 2;
  }
  try {
    if (args.back().ends_with(".gguf")) return inspect_gguf(args.back(), allow_non_finite);
    return inspect(args.back(), allow_non_finite);
  } catch (const std::exception& e) {
    std::cerr << "peft-inspect: " << e.what() << "\n";
    return 1;
  }
}
