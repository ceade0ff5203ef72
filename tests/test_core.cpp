// Core building blocks: Linear, parameter blocks, the generator, inits, dropout.
#include <peft/core/dropout.hpp>
#include <peft/core/init.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/parameters.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

template <class T>
class LinearTest : public ::testing::Test {};
TYPED_TEST_SUITE(LinearTest, Precisions);

TYPED_TEST(LinearTest, ForwardAndBackwardMatchTheFormulas) {
  using T = TypeParam;
  const Matrix<T> W = random_matrix<T>(5, 7, 1);
  const Vector<T> b = random_matrix<T>(5, 1, 2);
  const Matrix<T> X = random_matrix<T>(3, 7, 3);
  const Matrix<T> dY = random_matrix<T>(3, 5, 4);
  Linear<T> layer(W, b);
  EXPECT_EQ(layer.in_features(), 7);
  EXPECT_EQ(layer.out_features(), 5);
  EXPECT_TRUE(layer.has_bias());
  Matrix<double> expected = X.template cast<double>() * W.template cast<double>().transpose();
  expected.rowwise() += b.template cast<double>().transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  EXPECT_LT(max_rel_diff(layer.backward(dY), dY.template cast<double>() * W.template cast<double>()), tolerance<T>());
  EXPECT_DOUBLE_EQ(layer.flops(3), 4.0 * 3 * 7 * 5);
}

TYPED_TEST(LinearTest, NoBiasAndBadShapes) {
  using T = TypeParam;
  Linear<T> layer(random_matrix<T>(4, 6, 1));
  EXPECT_FALSE(layer.has_bias());
  const Matrix<T> X = random_matrix<T>(2, 6, 2);
  EXPECT_LT(max_rel_diff(layer.forward(X), (X * layer.weight().transpose()).eval()), tolerance<T>());
  EXPECT_PEFT_ERROR(layer.forward(Matrix<T>(2, 5)), "Linear::forward: X must have in_features = 6 columns, got 2 x 5");
  EXPECT_PEFT_ERROR(layer.backward(Matrix<T>(2, 3)), "Linear::backward: dY must have out_features = 4 columns");
  EXPECT_PEFT_ERROR(Linear<T>(random_matrix<T>(4, 6, 1), Vector<T>(3)), "bias must have 0 or d_out = 4 entries, got 3");
  EXPECT_PEFT_ERROR(Linear<T>(Matrix<T>(0, 3)), "weight must be non-empty");
}

TEST(Linear, RandomInitIsTorchDefault) {
  Rng rng(3);
  const auto layer = Linear<double>::random(100, 50, rng);
  const double bound = 1.0 / std::sqrt(100.0);
  EXPECT_LE(layer.weight().cwiseAbs().maxCoeff(), bound);
  EXPECT_GT(layer.weight().cwiseAbs().maxCoeff(), 0.95 * bound);
  EXPECT_LE(layer.bias().cwiseAbs().maxCoeff(), bound);
}

TEST(ParameterBlock, ViewsShareOneContiguousBlock) {
  ParameterBlock<double> block;
  EXPECT_EQ(block.add("a", {2, 3}), 0);
  EXPECT_EQ(block.add("v", {4}), 1);
  EXPECT_EQ(block.add("k", {2, 3, 2}), 2);
  EXPECT_EQ(block.num_params(), 6 + 4 + 12);
  auto views = block.views();
  ASSERT_EQ(views.size(), 3u);
  EXPECT_EQ(views[0].name, "a");
  EXPECT_EQ(views[1].value.rows(), 1);  // 1-D tensors view as 1 x n
  EXPECT_EQ(views[1].value.cols(), 4);
  EXPECT_EQ(views[2].value.rows(), 2);  // 3-D as first dimension x the rest
  EXPECT_EQ(views[2].value.cols(), 6);
  EXPECT_EQ(std::vector<Index>(views[2].shape.begin(), views[2].shape.end()), (std::vector<Index>{2, 3, 2}));
  EXPECT_EQ(views[1].value.data(), block.values().data() + 6);
  EXPECT_EQ(views[2].grad.data(), block.grads().data() + 10);
  views[1].grad.setConstant(2.0);
  EXPECT_EQ(block.grads().sum(), 8.0);
  block.zero_grad();
  EXPECT_EQ(block.grads().cwiseAbs().sum(), 0.0);
  EXPECT_EQ(block.find("k"), 2);
  EXPECT_EQ(block.find("missing"), -1);
  EXPECT_PEFT_ERROR(block.add("a", {1}), "ParameterBlock::add: tensor 'a' declared twice");
  EXPECT_PEFT_ERROR(block.add("z", {3, 0}), "has a dimension 0, expected every dimension > 0");
}

TEST(Rng, IsDeterministicAndRoughlyUniformAndNormal) {
  Rng a(42), b(42), c(43);
  EXPECT_EQ(a.next(), b.next());
  EXPECT_NE(a.next(), c.next());
  Rng rng(7);
  double sum = 0, sum_sq = 0, normal_sum = 0, normal_sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
    const double z = rng.normal();
    normal_sum += z;
    normal_sq += z * z;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum_sq / n - 0.25, 1.0 / 12.0, 0.002);
  EXPECT_NEAR(normal_sum / n, 0.0, 0.01);
  EXPECT_NEAR(normal_sq / n, 1.0, 0.01);
}

TEST(Init, KaimingUniformBoundsFollowTorch) {
  Rng rng(1);
  Matrix<double> w(64, 300);
  init::kaiming_uniform(w, 300, std::sqrt(5.0), rng);
  const double bound = 1.0 / std::sqrt(300.0);  // gain·sqrt(3/fan_in) with a = √5
  EXPECT_LE(w.cwiseAbs().maxCoeff(), bound);
  EXPECT_GT(w.cwiseAbs().maxCoeff(), 0.99 * bound);
  init::kaiming_uniform(w, 300, 0.0, rng);  // a = 0: bound sqrt(6/fan_in)
  EXPECT_LE(w.cwiseAbs().maxCoeff(), std::sqrt(6.0 / 300.0));
  EXPECT_GT(w.cwiseAbs().maxCoeff(), 0.99 * std::sqrt(6.0 / 300.0));
}

TEST(Dropout, KeepsAboutOneMinusPAndScales) {
  Dropout<double> dropout(0.25, 9);
  const Matrix<double> X = Matrix<double>::Ones(200, 100);
  Matrix<double> out;
  dropout.forward(X, out);
  const double kept = (out.array() != 0.0).cast<double>().mean();
  EXPECT_NEAR(kept, 0.75, 0.01);
  EXPECT_DOUBLE_EQ(out.maxCoeff(), 1.0 / 0.75);
  Matrix<double> g = Matrix<double>::Ones(200, 100);
  dropout.backward(g);
  EXPECT_EQ(g, out);  // the same mask routes the gradient
  EXPECT_PEFT_ERROR(Dropout<double>(1.0), "Dropout: probability must be in [0, 1), got 1");
  EXPECT_PEFT_ERROR(Dropout<double>(-0.1), "Dropout: probability must be in [0, 1)");
}

}  // namespace
}  // namespace peft::test
