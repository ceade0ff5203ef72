// The C++ side of minilm_vs_peft.py: one training step of the MiniLM example's
// encoder (examples/minilm/bert.hpp) with PEFT's adapters, for comparison
// with transformers' BertModel + PEFT.
//   minilm_driver F32|F64 MODEL_DIR CASE_DIR
// CASE_DIR/adapter is PEFT's save_pretrained output for a BertModel;
// CASE_DIR/inputs.safetensors holds "ids" and "mask" (sequences x length),
// "labels" (sequences) and the classifier "head/W" (classes x hidden) and
// "head/b". Every module the adapter file names gets its adapter (load_peft +
// wrap); then pooled = mean of the last hidden states over the mask, logits =
// pooled·Wᵀ + b, loss = mean cross-entropy, and backward. Written to
// CASE_DIR/ours.safetensors: "pooled", "logits", "loss", and per module
// "<m>/grad/<p>" for every parameter the layer reports.
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include <peft/peft.hpp>

#include "bert.hpp"

namespace fs = std::filesystem;
using peft::Index;

namespace {

minilm::Module module_of(const std::string& path) {
  for (int which = 0; which < minilm::kLinears; ++which)
    if (path == minilm::module_name(static_cast<minilm::Module>(which))) return static_cast<minilm::Module>(which);
  throw std::runtime_error("minilm_driver: '" + path + "' is not one of a BERT layer's linear layers");
}

template <class T>
void run(const fs::path& model_dir, const fs::path& case_dir, const std::string& dtype) {
  auto encoder = minilm::BertEncoder<T>::load(model_dir);
  const auto adapters = peft::io::load_peft<T>(case_dir / "adapter");
  const std::regex layer_module(R"(encoder\.layer\.(\d+)\.(.+))");
  std::vector<std::pair<std::string, peft::AdaptedLayer<T>*>> layers;
  for (const auto& m : adapters.modules()) {
    std::smatch match;
    if (!std::regex_match(m, match, layer_module))
      throw std::runtime_error("minilm_driver: module '" + m + "' is not encoder.layer.<l>.<linear>");
    const Index l = std::stol(match[1].str());
    const minilm::Module which = module_of(match[2].str());
    encoder.adapt(l, which, [&](peft::Linear<T> base) { return adapters.wrap(m, std::move(base)); });
    layers.emplace_back(m, &encoder.layer(l).linear(which).adapter_layer());
  }
  for (auto& [name, layer] : layers) layer->set_training(false);  // PEFT's side runs in eval mode

  const peft::io::Safetensors inputs = peft::io::read_safetensors(case_dir / "inputs.safetensors");
  const peft::Matrix<double> ids = inputs.at("ids").to_matrix<double>(), mask = inputs.at("mask").to_matrix<double>();
  minilm::TokenBatch batch;
  batch.sequences = ids.rows();
  batch.length = ids.cols();
  for (Index b = 0; b < ids.rows(); ++b)
    for (Index t = 0; t < ids.cols(); ++t) {
      batch.ids.push_back(static_cast<std::int32_t>(ids(b, t)));
      batch.mask.push_back(static_cast<std::int32_t>(mask(b, t)));
    }
  const peft::Vector<double> labels = inputs.at("labels").to_vector<double>();
  const peft::Matrix<T> W = inputs.at("head/W").to_matrix<T>();
  const peft::Vector<T> bias = inputs.at("head/b").to_vector<T>();

  const peft::Matrix<T> pooled = encoder.forward(batch);
  peft::Matrix<T> logits = pooled * W.transpose();
  logits.rowwise() += bias.transpose();
  // Mean cross-entropy and its gradient (softmax − one-hot) / N.
  const Index N = logits.rows();
  peft::Matrix<T> dlogits(N, logits.cols());
  double loss = 0;
  for (Index i = 0; i < N; ++i) {
    const T top = logits.row(i).maxCoeff();
    const auto e = (logits.row(i).array() - top).exp().eval();
    const T sum = e.sum();
    const auto y = static_cast<Index>(labels(i));
    loss -= static_cast<double>(std::log(e(y) / sum));
    dlogits.row(i) = e / (sum * static_cast<T>(N));
    dlogits(i, y) -= T(1) / static_cast<T>(N);
  }
  loss /= static_cast<double>(N);
  encoder.backward(dlogits * W);

  peft::io::TensorMap out;
  auto put = [&](const std::string& key, const auto& m, std::vector<std::int64_t> shape = {}) {
    out.emplace(key, peft::io::Tensor::from(m, std::move(shape), dtype));
  };
  put("pooled", pooled);
  put("logits", logits);
  put("loss", peft::Matrix<double>::Constant(1, 1, loss), {1});
  for (auto& [name, layer] : layers)
    for (const auto& p : layer->parameters())
      put(name + "/grad/" + std::string(p.name), p.grad, std::vector<std::int64_t>(p.shape.begin(), p.shape.end()));
  peft::io::write_safetensors(case_dir / "ours.safetensors", out, {});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::string(argv[1]) != "F32" && std::string(argv[1]) != "F64")) {
    std::cerr << "usage: minilm_driver F32|F64 MODEL_DIR CASE_DIR\n";
    return 2;
  }
  try {
    if (std::string(argv[1]) == "F64") run<double>(argv[2], argv[3], "F64");
    else run<float>(argv[2], argv[3], "F32");
  } catch (const std::exception& e) {
    std::cerr << "minilm_driver: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
