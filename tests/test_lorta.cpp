// LoRTA: one CP factor set shared by several adapted layers.
#include <peft/adapters/lorta.hpp>

#include "adapter_checks.hpp"

namespace peft::test {
namespace {

static_assert(Adapter<LoRTA<float>> && Mergeable<LoRTA<double>>);

template <class T>
std::shared_ptr<LoRTAFactors<T>> random_factors(Index heads = 3) {
  auto f = std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = 4, .alpha = 6, .d = 24, .heads = heads, .layers = 3, .matrix_types = 2, .seed = 1});
  f->value(LoRTAFactors<T>::kB) = random_matrix<T>(4, 24 / heads, 5);  // B starts at zero
  return f;
}

// ΔW from the CP formula written out entry by entry, the independent oracle.
Matrix<double> cp_delta(LoRTAFactors<double>& f, Index l, Index m) {
  const auto& c = f.config();
  const Index dh = f.head_dim();
  Matrix<double> dW = Matrix<double>::Zero(c.d, c.d);
  for (Index i = 0; i < c.d; ++i)
    for (Index h = 0; h < c.heads; ++h)
      for (Index j = 0; j < dh; ++j)
        for (Index k = 0; k < c.r; ++k)
          dW(i, h * dh + j) += f.value(0)(i, k) * f.value(1)(k, j) * f.value(2)(h, k) * f.value(3)(l, k) * f.value(4)(m, k);
  return f.scaling() * dW;
}

TEST(LoRTA, DeltaWeightMatchesTheCpFormulaAndForward) {
  for (const Index heads : {1, 3}) {
    auto f = random_factors<double>(heads);
    auto layer = wrap(LoRTA<double>(f, 2, 1));
    EXPECT_LT(max_rel_diff(layer.adapter().delta_weight(), cp_delta(*f, 2, 1)), 1e-13);
    expect_forward_matches_delta_weight(layer, 5);
    expect_merge_round_trip(layer, 5);
    EXPECT_EQ(f->num_params(), 4 * (24 + 24 / heads + heads + 3 + 2));
  }
  auto float_layer = wrap(LoRTA<float>(random_factors<float>(), 0, 0));
  expect_forward_matches_delta_weight(float_layer, 5);
  auto fresh = wrap(LoRTA<double>(std::make_shared<LoRTAFactors<double>>(LoRTAConfig{.d = 16, .heads = 2}), 0, 3));
  expect_identity_at_init(fresh, 3);
}

TEST(LoRTA, GradientsMatchFiniteDifferences) {
  for (const Index heads : {1, 3}) {
    auto layer = wrap(LoRTA<double>(random_factors<double>(heads), 1, 0));
    expect_gradients_match(layer, 4);
  }
}

TEST(LoRTA, SharedGradientsAreTheSumOverLayers) {
  auto f = random_factors<double>();
  std::vector<Adapted<LoRTA<double>>> layers;
  for (Index l = 0; l < 3; ++l) layers.push_back(wrap(LoRTA<double>(f, l, l % 2), true, 10 + l));
  std::vector<Matrix<double>> X, G;
  for (Index l = 0; l < 3; ++l) {
    X.push_back(random_matrix<double>(4, 24, 20 + l));
    G.push_back(random_matrix<double>(4, 24, 30 + l));
  }
  // Total loss Σ_l Σ Y_l ⊙ G_l of three independent layers sharing the factors.
  auto loss = [&] {
    double total = 0;
    for (Index l = 0; l < 3; ++l) total += (layers[l].forward(X[l]).array() * G[l].array()).sum();
    return total;
  };
  f->zero_grad();
  for (Index l = 0; l < 3; ++l) {
    layers[l].forward(X[l]);
    layers[l].backward(G[l]);
  }
  for (auto& p : f->parameters())
    EXPECT_LT(testing::relative_error(p.grad, testing::numerical_gradient(loss, p.value)), 1e-6) << p.name;
  // Each layer merges alone and matches its unmerged output.
  for (auto& layer : layers) expect_merge_round_trip(layer, 3);
}

TEST(LoRTA, RejectsBadInput) {
  EXPECT_PEFT_ERROR(LoRTAFactors<double>({.d = 24, .heads = 5}), "LoRTAFactors: heads must divide d = 24, got heads = 5");
  EXPECT_PEFT_ERROR(LoRTAFactors<double>({.r = 0, .d = 24}), "LoRTAFactors: r must be >= 1, got 0");
  EXPECT_PEFT_ERROR(LoRTAFactors<double>({.d = 0}), "LoRTAFactors: d must be positive, got 0");
  auto f = random_factors<double>();
  EXPECT_PEFT_ERROR(LoRTA<double>(f, 3, 0), "LoRTA: layer index must be in [0, 3), got 3");
  EXPECT_PEFT_ERROR(LoRTA<double>(f, 0, 2), "LoRTA: matrix type must be in [0, 2), got 2");
  EXPECT_PEFT_ERROR(LoRTA<double>(nullptr, 0, 0), "LoRTA: factors must not be null");
  EXPECT_PEFT_ERROR(wrap(LoRTA<double>(f, 0, 0)).forward(Matrix<double>::Zero(2, 23)), "X must have in_features = 24 columns");
}

}  // namespace
}  // namespace peft::test
