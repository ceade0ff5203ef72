// Two tasks, one frozen layer: a LoRA adapter learns one task, a RED adapter
// (scale and bias on the output) another, both over the same base weights,
// which are held once. Then one mixed batch serves rows of both tasks and of
// the base alone, checked against running each task's rows on its own.
#include <peft/peft.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using M = peft::Matrix<float>;

namespace {

float mse(const M& Y, const M& T) { return (Y - T).squaredNorm() / static_cast<float>(Y.rows()); }

/// Trains the adapter `name` alone (the others keep their values) on X -> T.
void train(peft::MultiAdapted<float>& layer, const std::string& name, const M& X, const M& T, int steps) {
  layer.set_adapter(name);
  peft::optim::AdamW<float> adamw(peft::optim::ParamSet<float>{layer.parameters(name)}, {.lr = 2e-2, .weight_decay = 0});
  for (int step = 0; step <= steps; ++step) {
    const M Y = layer.forward(X);
    if (step % (steps / 4) == 0) std::printf("  %-6s step %3d  mse %.6f\n", name.c_str(), step, mse(Y, T));
    adamw.zero_grad();
    layer.backward(2.0f * (Y - T) / static_cast<float>(X.rows()));
    adamw.step();
  }
}

}  // namespace

int main() {
  const peft::Index d_in = 64, d_out = 32, N = 256;
  peft::Rng rng(0);
  peft::MultiAdapted<float> layer(peft::Linear<float>::random(d_in, d_out, rng));  // the "pretrained" layer
  const M W = layer.base().weight();
  const auto b = layer.base().bias().transpose();

  // Task "lookup": the base plus a rank-2 change of the weights (LoRA's kind).
  // Task "tone": the base's output rescaled and shifted per feature (RED's kind).
  const M X = M::Random(N, d_in);
  const M dW = 0.3f * M::Random(d_out, 2) * M::Random(2, d_in);
  const M T_lookup = (X * (W + dW).transpose()).rowwise() + b;
  const M scale = (M::Random(1, d_out).array() * 0.5f + 1.0f).matrix(), shift = 0.2f * M::Random(1, d_out);
  M T_tone = (X * W.transpose()).rowwise() + b;
  T_tone = (T_tone.array().rowwise() * scale.row(0).array()).matrix();
  T_tone.rowwise() += shift.row(0);

  layer.add_adapter("lookup", peft::LoRA<float>(d_in, d_out, {.r = 4, .alpha = 8}));
  layer.add_adapter("tone", peft::RED<float>(d_in, d_out));
  std::printf("trainable: lookup %ld, tone %ld, frozen %ld (held once)\n",
              static_cast<long>(layer.num_params("lookup")), static_cast<long>(layer.num_params("tone")),
              static_cast<long>(d_in * d_out + d_out));
  train(layer, "lookup", X, T_lookup, 400);
  train(layer, "tone", X, T_tone, 400);

  // Serving: each row names its adapter (index into adapter_names(), -1 = base only).
  const int lookup = layer.index_of("lookup"), tone = layer.index_of("tone");
  std::vector<int> row_adapter(static_cast<std::size_t>(N));
  for (peft::Index i = 0; i < N; ++i) row_adapter[static_cast<std::size_t>(i)] = i % 3 == 0 ? lookup : i % 3 == 1 ? tone : -1;
  layer.set_training(false);
  const M mixed = layer.forward(X, row_adapter);

  // The same rows, one task at a time.
  float worst = 0, task_error[2] = {0, 0};
  for (int task : {lookup, tone, -1}) {
    std::vector<peft::Index> rows;
    for (peft::Index i = 0; i < N; ++i)
      if (row_adapter[static_cast<std::size_t>(i)] == task) rows.push_back(i);
    if (task < 0) layer.set_adapter(std::vector<std::string>{});
    else layer.set_adapter(layer.adapter_names()[static_cast<std::size_t>(task)]);
    const M alone = layer.forward(X(rows, Eigen::all));
    worst = std::max(worst, (M(mixed(rows, Eigen::all)) - alone).cwiseAbs().maxCoeff());
    if (task >= 0) task_error[task] = mse(alone, task == lookup ? M(T_lookup(rows, Eigen::all)) : M(T_tone(rows, Eigen::all)));
  }
  std::printf("mixed batch of %ld rows (lookup, tone, base): max |mixed - per task| = %.2e\n", static_cast<long>(N), worst);
  std::printf("served rows, mse: lookup %.6f, tone %.6f\n", task_error[lookup], task_error[tone]);
  {
    auto base_only = layer.disable_adapters();  // the pretrained layer, until the end of this scope
    std::printf("base alone on the lookup task: mse %.6f\n", mse(layer.forward(X), T_lookup));
  }
  return worst <= 1e-5f && task_error[lookup] < 1e-3f && task_error[tone] < 1e-3f ? 0 : 1;
}
