// The smallest complete use of peft-cpp: wrap a frozen Linear with LoRA, train
// the adapter to match a target layer with plain SGD, merge, save it as a
// Hugging Face PEFT adapter directory.
#include <peft/peft.hpp>

#include <cstdio>

int main() {
  using M = peft::Matrix<double>;
  peft::Rng rng(0);
  const peft::Index d_in = 64, d_out = 32, N = 128;

  // A frozen layer, and a target that differs from it by a rank-2 update.
  auto base = peft::Linear<double>::random(d_in, d_out, rng);
  M target = base.weight();
  target += 0.5 * M::Random(d_out, 2) * M::Random(2, d_in);

  const peft::LoRAConfig config{.r = 4, .alpha = 8};
  peft::Adapted layer(std::move(base), peft::LoRA<double>(d_in, d_out, config));
  const M X = M::Random(N, d_in);
  const M Y_target = X * target.transpose() + (M::Ones(N, 1) * layer.base().bias().transpose());

  for (int step = 0; step <= 300; ++step) {
    const M Y = layer.forward(X);
    const M dY = (Y - Y_target) / static_cast<double>(N);  // loss = ½·mean row ‖Y − target‖²
    if (step % 50 == 0) std::printf("step %3d  loss %.6f\n", step, 0.5 * (Y - Y_target).squaredNorm() / N);
    layer.adapter().zero_grad();
    layer.backward(dY);
    for (auto& p : layer.adapter().parameters()) p.value -= 0.05 * p.grad;
  }

  layer.merge();  // inference now costs what the frozen layer costs
  std::printf("merged: max |ΔW| = %.4f, trainable params %ld of %ld\n",
              layer.adapter().delta_weight().cwiseAbs().maxCoeff(), static_cast<long>(layer.adapter().num_params()),
              static_cast<long>(d_in * d_out));

  // An adapter directory as Hugging Face PEFT writes it (adapter_config.json +
  // adapter_model.safetensors): PeftModel.from_pretrained and peft-inspect read it.
  peft::io::save_peft<double>("lora_quickstart_adapter", peft::io::peft_config(config), {{"fc", layer}});
  const auto reloaded = peft::io::load_peft<double>("lora_quickstart_adapter");
  std::printf("saved lora_quickstart_adapter/ (%s, modules: %s); try: peft-inspect lora_quickstart_adapter\n",
              reloaded.config().peft_type.c_str(), reloaded.modules().front().c_str());
}
