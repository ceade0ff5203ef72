// The gradient checker itself: exact on known derivatives, and it catches a
// wrong backward pass (so tests built on it can fail).
#include <peft/adapters/lora.hpp>
#include <peft/core/adapted.hpp>
#include <peft/testing/gradcheck.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

TEST(GradCheck, NumericalGradientOfAKnownFunction) {
  Matrix<double> x = random_matrix<double>(3, 4, 1);
  // f = Σ sin(x_ij) · x_ij², f' = cos(x)·x² + 2x·sin(x)
  auto f = [&] { return (x.array().sin() * x.array().square()).sum(); };
  const Matrix<double> expected = (x.array().cos() * x.array().square() + 2 * x.array() * x.array().sin()).matrix();
  const Matrix<double> before = x;
  EXPECT_LT(testing::relative_error(testing::numerical_gradient(f, x), expected), 1e-9);
  EXPECT_EQ(x, before);  // restored
}

TEST(GradCheck, RelativeErrorIsZeroForEqualAndOneForOpposite) {
  const Matrix<double> a = random_matrix<double>(2, 2, 1);
  EXPECT_EQ(testing::relative_error(a, a), 0.0);
  EXPECT_DOUBLE_EQ(testing::relative_error(a, (-a).eval()), 2.0);
  EXPECT_EQ(testing::relative_error(Matrix<double>::Zero(2, 2), Matrix<double>::Zero(2, 2)), 0.0);
}

// LoRA whose backward forgets the scaling on dA: the checker must flag lora_A
// and nothing else.
class BrokenLoRA : public LoRA<double> {
 public:
  using LoRA<double>::LoRA;
  void backward_delta(const ConstMatrixRef<double>& dY, Matrix<double>& dX) {
    LoRA<double>::backward_delta(dY, dX);
    parameter_block().grad(0) *= 2.0;
  }
};

TEST(GradCheck, FlagsAWrongBackward) {
  Adapted layer(Linear<double>(random_matrix<double>(6, 5, 1)),
                BrokenLoRA(5, 6, LoRAConfig{.r = 2, .alpha = 3, .init = LoRAInit::None}));
  const auto errors = testing::check_gradients(layer, random_matrix<double>(4, 5, 2), random_matrix<double>(4, 6, 3));
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].name, "X");
  EXPECT_LT(errors[0].error, 1e-8);
  EXPECT_EQ(errors[1].name, "lora_A");
  EXPECT_GT(errors[1].error, 0.3);
  EXPECT_EQ(errors[2].name, "lora_B");
  EXPECT_LT(errors[2].error, 1e-8);
}

}  // namespace
}  // namespace peft::test
