// MELoRA: n mini LoRAs on contiguous blocks, block-diagonal ΔW.
#include <peft/adapters/melora.hpp>

#include "adapter_checks.hpp"

namespace peft::test {
namespace {

template <class T>
class MELoRATest : public ::testing::Test {};
TYPED_TEST_SUITE(MELoRATest, Precisions);

static_assert(Adapter<MELoRA<float>> && Mergeable<MELoRA<double>>);

TYPED_TEST(MELoRATest, DeltaWeightIsBlockDiagonalAndForwardMatches) {
  using T = TypeParam;
  auto layer = wrap(MELoRA<T>(48, 32, {.r = 3, .n = 4, .alpha = 6, .init = LoRAInit::None}));
  const auto& m = layer.adapter();
  Matrix<double> expected = Matrix<double>::Zero(32, 48);
  for (Index i = 0; i < 4; ++i)
    expected.block(i * 8, i * 12, 8, 12) = 2.0 * m.B(i).template cast<double>() * m.A(i).template cast<double>();
  EXPECT_LT(max_rel_diff(m.delta_weight(), expected), tolerance<T>());
  EXPECT_EQ(m.num_params(), 3 * (48 + 32));
  expect_forward_matches_delta_weight(layer, 5);
  expect_merge_round_trip(layer, 5);
  auto fresh = wrap(MELoRA<T>(48, 32, {.r = 3, .n = 4}));
  expect_identity_at_init(fresh, 3);
  EXPECT_EQ(fresh.adapter().parameters()[2].name, "lora_A.1");
}

TEST(MELoRA, GradientsMatchFiniteDifferences) {
  auto layer = wrap(MELoRA<double>(48, 32, {.r = 2, .n = 4, .alpha = 6, .init = LoRAInit::None}));
  expect_gradients_match(layer, 5);
}

TEST(MELoRA, DropoutRoutesGradientThroughTheMask) {
  auto layer = wrap(MELoRA<double>(12, 8, {.r = 2, .n = 2, .dropout = 0.4, .init = LoRAInit::None, .seed = 2}));
  const Matrix<double> X = random_matrix<double>(4, 12, 1), G = random_matrix<double>(4, 8, 2);
  const Matrix<double> Y = layer.forward(X);
  const Matrix<double> dX = layer.backward(G);
  Dropout<double> twin(0.4, 3);  // MELoRA seeds its dropout with seed + 1
  Matrix<double> dropped;
  twin.forward(X, dropped);
  const Matrix<double> dW = layer.adapter().delta_weight();
  EXPECT_LT(max_rel_diff((Y - layer.base().forward(X)).eval(), (dropped * dW.transpose()).eval()), 1e-12);
  const Matrix<double> expected = G * layer.base().weight() + ((G * dW).array() * twin.mask().array()).matrix();
  EXPECT_LT(max_rel_diff(dX, expected), 1e-12);
}

TEST(MELoRA, RejectsBadInput) {
  EXPECT_PEFT_ERROR(MELoRA<double>(48, 30, {.n = 4}),
                    "MELoRA: the number of minis n must divide d_in = 48 and d_out = 30, got n = 4");
  EXPECT_PEFT_ERROR(MELoRA<double>(48, 32, {.n = 0}), "got n = 0");
  EXPECT_PEFT_ERROR(MELoRA<double>(48, 32, {.r = 9, .n = 4}), "MELoRA: rank per mini must be in [1, min(d_in, d_out)/n] = [1, 8], got 9");
  EXPECT_PEFT_ERROR(MELoRA<double>(48, 32, {.alpha = -1}), "MELoRA: alpha must be a finite value > 0");
  MELoRA<double> m(48, 32, {.r = 2, .n = 4});
  Matrix<double> Y(3, 32);
  EXPECT_PEFT_ERROR(m.forward_delta(Matrix<double>::Zero(3, 47), Y), "MELoRA::forward_delta: expected X with d_in = 48");
}

}  // namespace
}  // namespace peft::test
