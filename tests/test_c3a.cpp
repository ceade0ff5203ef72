// C3A: PEFT's block-circulant parameterisation with the exact gradient.
#include <peft/adapters/c3a.hpp>

#include "adapter_checks.hpp"
#include "golden_case.hpp"

namespace peft::test {
namespace {

static_assert(Adapter<C3A<float>> && Mergeable<C3A<double>>);

template <class T>
class C3ATest : public ::testing::Test {};
TYPED_TEST_SUITE(C3ATest, Precisions);

TYPED_TEST(C3ATest, ForwardMatchesDenseDeltaAndMerges) {
  using T = TypeParam;
  for (const auto& [d_in, d_out, b] : {std::tuple<Index, Index, Index>{48, 64, 8}, {64, 40, 8}, {12, 12, 12}, {30, 45, 5},
                                       {16, 16, 1}}) {
    auto layer = wrap(C3A<T>(d_in, d_out, {.block_size = b, .init = C3AInit::Gaussian}));
    EXPECT_EQ(layer.adapter().num_params(), d_in * d_out / b);
    expect_forward_matches_delta_weight(layer, 5);
    expect_merge_round_trip(layer, 5);
  }
  auto zero = wrap(C3A<T>(48, 64, {.block_size = 8, .init = C3AInit::Zeros}));
  expect_identity_at_init(zero, 3);
}

TEST(C3A, DeltaWeightBlocksAreFirstRowCirculants) {
  C3A<double> c3a(8, 4, {.block_size = 4, .init = C3AInit::Gaussian});
  const auto K = c3a.parameters()[0].value;  // [1, 2, 4] as 1 x 8
  const Matrix<double> dW = c3a.delta_weight();
  for (Index j = 0; j < 2; ++j)
    for (Index t = 0; t < 4; ++t)
      for (Index u = 0; u < 4; ++u) EXPECT_DOUBLE_EQ(dW(t, j * 4 + u), K(0, j * 4 + (u - t + 4) % 4) / 8.0);
}

TEST(C3A, GradientsMatchFiniteDifferences) {
  for (const auto& [d_in, d_out, b] : {std::tuple<Index, Index, Index>{48, 64, 8}, {30, 45, 5}, {12, 12, 12}}) {
    auto layer = wrap(C3A<double>(d_in, d_out, {.block_size = b, .init = C3AInit::Gaussian}));
    expect_gradients_match(layer, 3);
  }
}

TEST(C3A, ReproducesPeftGoldenWithTheExactGradient) {
  GoldenCase golden("c3a_f32");
  Adapted fc1(golden.base<float>("fc1"), C3A<float>(48, 64, {.block_size = 8}));
  Adapted fc2(golden.base<float>("fc2"), C3A<float>(64, 40, {.block_size = 8}));
  fc1.adapter().parameters()[0].value = golden.saved<float>("fc1", "c3a_kernel");
  fc2.adapter().parameters()[0].value = golden.saved<float>("fc2", "c3a_kernel");
  golden.check(fc1, fc2, 1e-5, [](const std::string&, std::string_view name) { return std::string(name) + ".default"; });
}

TEST(C3A, StridedInputsGiveTheSameResultAsContiguousOnes) {
  // X and dY as column blocks of wider matrices (outer stride > columns).
  C3A<double> c3a(12, 8, {.block_size = 4, .init = C3AInit::Gaussian});
  const Matrix<double> wide_x = random_matrix<double>(3, 15, 1), wide_g = random_matrix<double>(3, 11, 2);
  const Matrix<double> x = wide_x.leftCols(12), g = wide_g.leftCols(8);
  Matrix<double> y_strided = Matrix<double>::Ones(3, 8), y = y_strided;
  Matrix<double> dx_strided = Matrix<double>::Ones(3, 12), dx = dx_strided;
  c3a.forward_delta(wide_x.leftCols(12), y_strided);
  c3a.backward_delta(wide_g.leftCols(8), dx_strided);
  const Matrix<double> grad_strided = c3a.parameters()[0].grad;
  c3a.zero_grad();
  c3a.forward_delta(x, y);
  c3a.backward_delta(g, dx);
  EXPECT_LT(max_rel_diff(y_strided, y), 1e-15);
  EXPECT_LT(max_rel_diff(dx_strided, dx), 1e-15);
  EXPECT_LT(max_rel_diff(grad_strided, Matrix<double>(c3a.parameters()[0].grad)), 1e-15);
  EXPECT_LT(max_rel_diff(y, (Matrix<double>::Ones(3, 8) + x * c3a.delta_weight().transpose()).eval()), 1e-12);
}

TEST(C3A, RejectsBadInput) {
  EXPECT_PEFT_ERROR(C3A<double>(48, 64, {.block_size = 5}), "C3A: block_size must divide d_in = 48 and d_out = 64, got 5");
  EXPECT_PEFT_ERROR(C3A<double>(48, 64, {.block_size = 0}), "got 0");
  C3A<double> c3a(8, 8, {.block_size = 4});
  Matrix<double> Y(2, 8), dX(2, 8);
  EXPECT_PEFT_ERROR(c3a.forward_delta(Matrix<double>::Zero(2, 7), Y), "C3A::forward_delta: expected X with d_in = 8");
  EXPECT_PEFT_ERROR(c3a.backward_delta(Matrix<double>::Zero(2, 8), dX), "C3A::backward_delta: dY must be -1 x 8");
  c3a.forward_delta(Matrix<double>::Zero(2, 8), Y);
  Matrix<double> wrong_dx(3, 8);
  EXPECT_PEFT_ERROR(c3a.backward_delta(Matrix<double>::Zero(2, 8), wrong_dx), "C3A::backward_delta: dX must be 2 x 8");
}

}  // namespace
}  // namespace peft::test
