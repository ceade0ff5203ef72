// LoRA: dense reference, finite differences, merge, init, accumulation,
// dropout and bad input.
#include <peft/adapters/lora.hpp>
#include <peft/core/adapted.hpp>
#include <peft/testing/gradcheck.hpp>

#include <sstream>

#include "adapter_checks.hpp"
#include "test_util.hpp"

namespace peft::test {
namespace {

template <class T>
class LoRATest : public ::testing::Test {};
TYPED_TEST_SUITE(LoRATest, Precisions);

static_assert(Adapter<LoRA<float>> && Mergeable<LoRA<double>> && AddsDelta<LoRA<double>>);

template <class T>
Adapted<LoRA<T>> make_layer(Index d_in, Index d_out, const LoRAConfig& config, std::uint64_t seed = 1) {
  return Adapted<LoRA<T>>(Linear<T>(random_matrix<T>(d_out, d_in, seed), random_matrix<T>(d_out, 1, seed + 1)),
                          LoRA<T>(d_in, d_out, config));
}

TYPED_TEST(LoRATest, ForwardEqualsDenseReference) {
  using T = TypeParam;
  for (const bool rslora : {false, true}) {
    auto layer = make_layer<T>(48, 40, {.r = 8, .alpha = 16, .rslora = rslora, .init = LoRAInit::None});
    const Matrix<T> X = random_matrix<T>(7, 48, 5);
    const auto& lora = layer.adapter();
    const double s = rslora ? 16.0 / std::sqrt(8.0) : 2.0;
    EXPECT_NEAR(lora.scaling(), s, 1e-6);
    const Matrix<double> dW = s * lora.B().template cast<double>() * lora.A().template cast<double>();
    EXPECT_LT(max_rel_diff(lora.delta_weight(), dW), tolerance<T>());
    Matrix<double> expected = X.template cast<double>() * (layer.base().weight().template cast<double>() + dW).transpose();
    expected.rowwise() += layer.base().bias().template cast<double>().transpose();
    EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  }
}

TYPED_TEST(LoRATest, BackwardEqualsDenseReference) {
  using T = TypeParam;
  auto layer = make_layer<T>(32, 24, {.r = 4, .alpha = 6, .init = LoRAInit::None});
  const Matrix<T> X = random_matrix<T>(5, 32, 5);
  const Matrix<T> G = random_matrix<T>(5, 24, 6);
  layer.forward(X);
  const Matrix<T> dX = layer.backward(G);
  const auto& lora = layer.adapter();
  const double s = 1.5;
  const Matrix<double> A = lora.A().template cast<double>(), B = lora.B().template cast<double>();
  const Matrix<double> Xd = X.template cast<double>(), Gd = G.template cast<double>();
  const Matrix<double> W = layer.base().weight().template cast<double>();
  EXPECT_LT(max_rel_diff(dX, (Gd * (W + s * B * A)).eval()), tolerance<T>());
  auto params = layer.adapter().parameters();
  EXPECT_LT(max_rel_diff(params[0].grad, (s * B.transpose() * Gd.transpose() * Xd).eval()), tolerance<T>());
  EXPECT_LT(max_rel_diff(params[1].grad, (s * Gd.transpose() * Xd * A.transpose()).eval()), tolerance<T>());
}

TEST(LoRA, GradientsMatchFiniteDifferences) {
  for (const bool rslora : {false, true}) {
    auto layer = make_layer<double>(48, 64, {.r = 8, .alpha = 16, .rslora = rslora, .init = LoRAInit::None});
    const auto errors =
        testing::check_gradients(layer, random_matrix<double>(5, 48, 7), random_matrix<double>(5, 64, 8));
    ASSERT_EQ(errors.size(), 3u);  // X, lora_A, lora_B
    for (const auto& e : errors) {
      EXPECT_LT(e.error, 1e-6) << e.name;
      std::ostringstream error;
      error << std::scientific << e.error;
      RecordProperty("gradcheck_" + e.name + (rslora ? "_rslora" : ""), error.str());
    }
  }
}

TYPED_TEST(LoRATest, MergeMatchesAndUnmergeRestores) {
  using T = TypeParam;
  auto layer = make_layer<T>(48, 40, {.r = 8, .alpha = 16, .init = LoRAInit::None});
  const Matrix<T> X = random_matrix<T>(6, 48, 3);
  const Matrix<T> W = layer.base().weight();
  const Matrix<T> Y = layer.forward(X);
  layer.merge();
  EXPECT_TRUE(layer.merged());
  EXPECT_LT(max_rel_diff(layer.forward(X), Y), 10 * tolerance<T>());
  layer.unmerge();
  EXPECT_FALSE(layer.merged());
  EXPECT_LT(max_rel_diff(layer.base().weight(), W), (std::is_same_v<T, float> ? 1e-6 : 1e-12));
  EXPECT_LT(max_rel_diff(layer.forward(X), Y), tolerance<T>());
}

TYPED_TEST(LoRATest, DefaultInitIsTheIdentityAndFollowsPeft) {
  using T = TypeParam;
  auto layer = make_layer<T>(100, 30, {.r = 8, .alpha = 16});
  const Matrix<T> X = random_matrix<T>(4, 100, 3);
  EXPECT_EQ(layer.forward(X), layer.base().forward(X));
  EXPECT_EQ(layer.adapter().B().cwiseAbs().maxCoeff(), T(0));
  const double bound = 1.0 / std::sqrt(100.0);  // kaiming_uniform(a=√5) on r x d_in
  EXPECT_LE(layer.adapter().A().cwiseAbs().maxCoeff(), bound);
  EXPECT_GT(layer.adapter().A().cwiseAbs().maxCoeff(), 0.9 * bound);

  LoRA<T> gaussian(400, 400, {.r = 16, .init = LoRAInit::Gaussian});
  const double std = std::sqrt(gaussian.A().template cast<double>().squaredNorm() / gaussian.A().size());
  EXPECT_NEAR(std, 1.0 / 16.0, 0.003);
  EXPECT_EQ(gaussian.B().cwiseAbs().maxCoeff(), T(0));

  LoRA<T> none(100, 30, {.r = 4, .init = LoRAInit::None});
  EXPECT_LE(none.B().cwiseAbs().maxCoeff(), 0.5);  // U(±1/√r)
  EXPECT_GT(none.B().cwiseAbs().maxCoeff(), 0.4);

  LoRA<T> same(100, 30, {.r = 4, .init = LoRAInit::None}), other(100, 30, {.r = 4, .init = LoRAInit::None, .seed = 5});
  EXPECT_EQ(same.A(), none.A());
  EXPECT_NE(other.A(), none.A());
}

TYPED_TEST(LoRATest, GradientsAccumulateUntilZeroGrad) {
  using T = TypeParam;
  auto layer = make_layer<T>(20, 12, {.r = 3, .alpha = 3, .init = LoRAInit::None});
  const Matrix<T> X = random_matrix<T>(4, 20, 3);
  const Matrix<T> G = random_matrix<T>(4, 12, 4);
  layer.forward(X);
  const Matrix<T> dX1 = layer.backward(G);
  const Vector<T> once = layer.adapter().parameter_block().grads();
  layer.forward(X);  // one backward per forward
  const Matrix<T> dX2 = layer.backward(G);
  EXPECT_EQ(dX1, dX2);
  EXPECT_LT(max_rel_diff(layer.adapter().parameter_block().grads(), (2 * once).eval()), tolerance<T>());
  layer.adapter().zero_grad();
  EXPECT_EQ(layer.adapter().parameter_block().grads().cwiseAbs().maxCoeff(), T(0));
  EXPECT_EQ(layer.adapter().num_params(), 3 * (20 + 12));
  EXPECT_DOUBLE_EQ(layer.adapter().flops(4), 6.0 * 4 * 3 * 32);
}

TEST(LoRA, DropoutAppliesTheSameMaskForwardAndBackward) {
  auto layer = make_layer<double>(30, 20, {.r = 4, .alpha = 8, .dropout = 0.3, .init = LoRAInit::None, .seed = 3});
  const Matrix<double> X = random_matrix<double>(6, 30, 3);
  const Matrix<double> G = random_matrix<double>(6, 20, 4);
  const Matrix<double> Y = layer.forward(X);
  const Matrix<double> dX = layer.backward(G);
  auto& lora = layer.adapter();
  const Matrix<double> A = lora.A(), B = lora.B(), W = layer.base().weight();
  const double s = lora.scaling();
  const Matrix<double> base_y = layer.base().forward(X);
  // LoRA seeds its dropout with seed + 1: an equal Dropout draws the same mask.
  Dropout<double> dropout(0.3, 3 + 1);
  Matrix<double> dropped;
  dropout.forward(X, dropped);
  const Matrix<double> mask = dropout.mask();
  EXPECT_GT((mask.array() == 0.0).count(), 0);
  EXPECT_LT(max_rel_diff((Y - base_y).eval(), (s * dropped * A.transpose() * B.transpose()).eval()), 1e-12);
  const Matrix<double> expected_dX = G * W + ((s * G * B * A).array() * mask.array()).matrix();
  EXPECT_LT(max_rel_diff(dX, expected_dX), 1e-12);
  EXPECT_LT(max_rel_diff(lora.parameter_block().grad(0), (s * B.transpose() * G.transpose() * dropped).eval()), 1e-12);
  // Eval mode: no dropout, the layer equals its merged form.
  layer.set_training(false);
  const Matrix<double> Y_eval = layer.forward(X);
  layer.merge();
  EXPECT_LT(max_rel_diff(layer.forward(X), Y_eval), 1e-12);
}

// PEFT allows r above min(d_in, d_out) (ΔW's rank is then capped); so do we.
TEST(LoRA, RankAboveTheSmallerDimension) {
  auto layer = make_layer<double>(6, 4, {.r = 10, .alpha = 5, .init = LoRAInit::None});
  EXPECT_NEAR(layer.adapter().scaling(), 0.5, 1e-15);
  EXPECT_EQ(layer.adapter().A().rows(), 10);
  const Matrix<double> X = random_matrix<double>(3, 6, 2);
  const Matrix<double> dW = 0.5 * layer.adapter().B() * layer.adapter().A();
  Matrix<double> expected = X * (layer.base().weight() + dW).transpose();
  expected.rowwise() += layer.base().bias().transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), 1e-13);
  for (const auto& e : testing::check_gradients(layer, X, random_matrix<double>(3, 4, 3))) EXPECT_LT(e.error, 1e-6) << e.name;
}

TEST(LoRA, RejectsInvalidConfigs) {
  EXPECT_PEFT_ERROR(LoRA<double>(48, 64, {.r = 0}), "LoRA: rank must be >= 1, got 0");
  EXPECT_PEFT_ERROR(LoRA<double>(48, 64, {.alpha = 0}), "LoRA: alpha must be a finite value > 0, got 0");
  EXPECT_PEFT_ERROR(LoRA<double>(48, 64, {.alpha = -2}), "LoRA: alpha must be a finite value > 0, got -2");
  EXPECT_PEFT_ERROR(LoRA<double>(48, 64, {.dropout = 1.0}), "LoRA: dropout must be in [0, 1), got 1");
  EXPECT_PEFT_ERROR(LoRA<double>(48, 64, {.dropout = -0.5}), "LoRA: dropout must be in [0, 1), got -0.5");
  EXPECT_PEFT_ERROR(LoRA<double>(0, 64, {}), "LoRA: d_in and d_out must be positive, got d_in = 0");
}

TEST(LoRA, RejectsBadShapesAndMisuse) {
  auto layer = make_layer<double>(48, 64, {.r = 8, .alpha = 16});
  EXPECT_PEFT_ERROR(layer.forward(Matrix<double>::Zero(5, 47)), "X must have in_features = 48 columns, got 5 x 47");
  EXPECT_PEFT_ERROR(layer.backward(Matrix<double>::Zero(5, 64)), "Adapted::backward: called before forward");
  layer.forward(Matrix<double>::Zero(5, 48));
  EXPECT_PEFT_ERROR(layer.backward(Matrix<double>::Zero(5, 63)), "dY must be N x out_features = 5 x 64");
  EXPECT_PEFT_ERROR(layer.backward(Matrix<double>::Zero(4, 64)), "got 4 x 64");
  layer.merge();
  EXPECT_PEFT_ERROR(layer.merge(), "Adapted::merge: already merged; call unmerge() first");
  EXPECT_PEFT_ERROR(make_layer<double>(48, 64, {.r = 8}).adapter().backward_delta(Matrix<double>::Zero(5, 64),
                                                                                 *std::make_unique<Matrix<double>>()),
                    "LoRA::backward_delta: dY must be 0 x 64");
  LoRA<double> lora(48, 64, {});
  Matrix<double> Y(5, 64);
  EXPECT_PEFT_ERROR(lora.forward_delta(Matrix<double>::Zero(5, 40), Y), "LoRA::forward_delta: expected X with d_in = 48");
  EXPECT_PEFT_ERROR(Adapted(Linear<double>(Matrix<double>::Zero(64, 40)), LoRA<double>(48, 64, {})),
                    "Adapted: adapter is 64 x 48 (d_out x d_in) but the base layer is 64 x 40");
}

}  // namespace
}  // namespace peft::test

namespace peft::test {
namespace {

// lora_bias (PEFT's LoraConfig.lora_bias): lora_B carries a bias, so
// Y = X·(W + s·B·A)ᵀ + b + s·b_B; merging adds s·b_B to the base bias.
TEST(LoRA, LoRABiasAddsScaledBiasTrainsItAndMergesIntoTheBaseBias) {
  auto layer = wrap(LoRA<double>(12, 9, {.r = 3, .alpha = 6, .init = LoRAInit::None, .lora_bias = true}));
  const auto params = layer.adapter().parameters();
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[2].name, "lora_B.bias");
  EXPECT_EQ(params[2].value.cols(), 9);
  EXPECT_GT(params[2].value.norm(), 0.0);  // init None: nn.Linear's default U(±1/√r)
  const Matrix<double> X = random_matrix<double>(5, 12, 3);
  Matrix<double> expected = X * (layer.base().weight() + layer.adapter().delta_weight()).transpose();
  expected.rowwise() += layer.base().bias().transpose() + 2.0 * params[2].value.row(0);
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), 1e-13);
  expect_gradients_match(layer, 5);
  expect_merge_round_trip(layer, 5);
  // Zero-initialised under PEFT's default init; merging needs a base bias.
  auto fresh = wrap(LoRA<double>(12, 9, {.r = 3, .lora_bias = true}), /*bias=*/false);
  EXPECT_EQ(fresh.adapter().parameters()[2].value.norm(), 0.0);
  EXPECT_PEFT_ERROR(fresh.merge(), "lora_bias needs a base layer with a bias");
}

}  // namespace
}  // namespace peft::test
