// Uses the public API end to end; exits non-zero if the merged layer differs.
#include <peft/peft.hpp>

#include <cstdio>

int main() {
  peft::Rng rng(1);
  auto base = peft::Linear<double>::random(16, 12, rng);
  peft::LoRA<double> lora(16, 12, peft::LoRAConfig{.r = 4, .alpha = 8, .init = peft::LoRAInit::None});
  peft::Adapted layer(std::move(base), std::move(lora));
  const peft::Matrix<double> X = peft::Matrix<double>::Random(3, 16);
  const peft::Matrix<double> Y = layer.forward(X);
  layer.merge();
  const double diff = (layer.forward(X) - Y).norm();
  std::printf("consumer: |merged - adapted| = %.3g\n", diff);
  return diff < 1e-12 ? 0 : 1;
}
