// Hugging Face PEFT 0.21's own LoRA outputs (golden/peft/lora_f64): a model
// y = fc2(fc1(x)), fc1: 48 -> 64, fc2: 64 -> 40, LoRA r = 8, α = 16 on both.
#include <peft/adapters/lora.hpp>
#include <peft/core/adapted.hpp>
#include <peft/io/safetensors.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

using M = Matrix<double>;

class LoRAGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto dir = kGoldenDir + "/peft/lora_f64/";
    io_ = io::read_safetensors(dir + "io.safetensors");
    adapter_file_ = io::read_safetensors(dir + "adapter_model.safetensors");
    for (const char* module : {"fc1", "fc2"}) layers_.push_back(make_layer(module));
  }

  Adapted<LoRA<double>> make_layer(const std::string& module) {
    Linear<double> base(io_.at("base." + module + ".weight").to_matrix<double>(),
                        io_.at("base." + module + ".bias").to_vector<double>());
    LoRA<double> lora(base.in_features(), base.out_features(), {.r = 8, .alpha = 16});
    // Values from the saved adapter file (what a user loads), which must equal
    // the in-memory parameters PEFT reported.
    const std::string key = "base_model.model." + module;
    lora.A() = adapter_file_.at(key + ".lora_A.weight").to_matrix<double>();
    lora.B() = adapter_file_.at(key + ".lora_B.weight").to_matrix<double>();
    EXPECT_EQ(M(lora.A()), io_.at("param." + key + ".lora_A.default.weight").to_matrix<double>());
    EXPECT_EQ(M(lora.B()), io_.at("param." + key + ".lora_B.default.weight").to_matrix<double>());
    return Adapted<LoRA<double>>(std::move(base), std::move(lora));
  }

  M forward(const M& x) { return layers_[1].forward(layers_[0].forward(x)); }

  io::Safetensors io_, adapter_file_;
  std::vector<Adapted<LoRA<double>>> layers_;
};

constexpr double kTol = 1e-10;

TEST_F(LoRAGolden, ForwardBackwardAndGradients) {
  const M x = io_.at("x").to_matrix<double>();
  EXPECT_LT(max_rel_diff(forward(x), io_.at("y").to_matrix<double>()), kTol);
  const M dx = layers_[0].backward(layers_[1].backward(io_.at("dy").to_matrix<double>()));
  EXPECT_LT(max_rel_diff(dx, io_.at("dx").to_matrix<double>()), kTol);
  const char* modules[] = {"fc1", "fc2"};
  for (int l = 0; l < 2; ++l)
    for (auto& p : layers_[l].adapter().parameters()) {
      const std::string key = "grad.base_model.model." + std::string(modules[l]) + "." + std::string(p.name) +
                              ".default.weight";
      EXPECT_LT(max_rel_diff(p.grad, io_.at(key).to_matrix<double>()), kTol) << key;
    }
}

TEST_F(LoRAGolden, MergedWeightsAndOutput) {
  const M x = io_.at("x").to_matrix<double>();
  const char* modules[] = {"fc1", "fc2"};
  for (int l = 0; l < 2; ++l) {
    layers_[l].merge();
    const std::string m = modules[l];
    EXPECT_LT(max_rel_diff(layers_[l].base().weight(), io_.at("merged." + m + ".weight").to_matrix<double>()), kTol);
    EXPECT_LT(max_rel_diff(layers_[l].base().bias().transpose(), io_.at("merged." + m + ".bias").to_matrix<double>()),
              kTol);
  }
  EXPECT_LT(max_rel_diff(forward(x), io_.at("y_merged").to_matrix<double>()), kTol);
}

}  // namespace
}  // namespace peft::test
