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

  // A bfloat16 base (through oneDNN when linked with peft::onednn): within
  // bfloat16 rounding of the float32 layer it was rounded from.
  const auto f32 = peft::Linear<float>::random(64, 48, rng);
  peft::Adapted bf16(peft::LinearBF16(f32), peft::LoRA<float>(64, 48, {.r = 4, .alpha = 8}));
  const peft::Matrix<float> Xf = peft::Matrix<float>::Random(5, 64);
  const peft::Matrix<float> Yf = f32.forward(Xf);
  const double rel = (bf16.forward(Xf) - Yf).norm() / Yf.norm();
  std::printf("consumer: bfloat16 base (%s) vs float32: %.3g relative\n", peft::gemm_backend().bf16.c_str(), rel);
  return diff < 1e-12 && rel < 1e-2 ? 0 : 1;
}
