// Adapted<A> routes forward and backward through all three adapter points in
// the documented order. Checked with small test-only adapters against dense
// math and finite differences, including one adapter that uses every point.
#include <peft/core/adapted.hpp>
#include <peft/core/parameters.hpp>
#include <peft/testing/gradcheck.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

using M = Matrix<double>;

// X' = X ⊙ l (row-broadcast), l: 1 x d_in.  Merge: W ← W·diag(l).
struct InputScale {
  using Scalar = double;
  ParameterBlock<double> params;
  M x;
  Index d_in, d_out;
  InputScale(Index in, Index out) : d_in(in), d_out(out) {
    params.add("scale", {in});
    params.value(0) = random_matrix<double>(1, in, 11);
  }
  Index in_features() const { return d_in; }
  Index out_features() const { return d_out; }
  auto parameters() { return params.views(); }
  void zero_grad() { params.zero_grad(); }
  Index num_params() const { return params.num_params(); }
  double flops(Index n) const { return 3.0 * static_cast<double>(n * d_in); }
  auto l() { return params.value(0).row(0).array(); }
  void forward_input(M& X) {
    x = X;
    X.array().rowwise() *= l();
  }
  void backward_input(M& dX) {
    params.grad(0).row(0).array() += (dX.array() * x.array()).colwise().sum();
    dX.array().rowwise() *= l();
  }
  void merge_into(Linear<double>& base) { base.weight().array().rowwise() *= l(); }
  void unmerge_from(Linear<double>& base) { base.weight().array().rowwise() /= l(); }
};

// Y += X·Dᵀ with a dense D, plus H' = H ⊙ s: uses the delta and output points.
struct DeltaAndOutputScale {
  using Scalar = double;
  ParameterBlock<double> params;
  M x, h;
  Index d_in, d_out;
  DeltaAndOutputScale(Index in, Index out) : d_in(in), d_out(out) {
    params.add("D", {out, in});
    params.add("s", {out});
    params.value(0) = random_matrix<double>(out, in, 12);
    params.value(1) = random_matrix<double>(1, out, 13);
  }
  Index in_features() const { return d_in; }
  Index out_features() const { return d_out; }
  auto parameters() { return params.views(); }
  void zero_grad() { params.zero_grad(); }
  Index num_params() const { return params.num_params(); }
  double flops(Index n) const { return 6.0 * static_cast<double>(n * d_in * d_out); }
  void forward_delta(const ConstMatrixRef<double>& X, M& Y) {
    x = X;
    Y.noalias() += X * params.value(0).transpose();
  }
  void backward_delta(const ConstMatrixRef<double>& dY, M& dX) {
    params.grad(0).noalias() += dY.transpose() * x;
    dX.noalias() += dY * params.value(0);
  }
  void forward_output(M& H) {
    h = H;
    H.array().rowwise() *= params.value(1).row(0).array();
  }
  void backward_output(M& dH) {
    params.grad(1).row(0).array() += (dH.array() * h.array()).colwise().sum();
    dH.array().rowwise() *= params.value(1).row(0).array();
  }
};

static_assert(Adapter<InputScale> && Mergeable<InputScale> && EditsInput<InputScale>);
static_assert(Adapter<DeltaAndOutputScale> && !Mergeable<DeltaAndOutputScale>);

TEST(Adapted, InputEditMatchesDenseMathAndMerges) {
  Linear<double> base(random_matrix<double>(5, 6, 1), random_matrix<double>(5, 1, 2));
  const M W = base.weight();
  const Vector<double> b = base.bias();
  Adapted layer(std::move(base), InputScale(6, 5));
  const M X = random_matrix<double>(4, 6, 3);
  const Eigen::RowVectorXd l = layer.adapter().params.value(0).row(0);
  M expected = (X.array().rowwise() * l.array()).matrix() * W.transpose();
  expected.rowwise() += b.transpose();
  const M Y = layer.forward(X);
  EXPECT_LT(max_rel_diff(Y, expected), 1e-14);
  for (const auto& e : testing::check_gradients(layer, X, random_matrix<double>(4, 5, 4)))
    EXPECT_LT(e.error, 1e-8) << e.name;
  layer.merge();
  EXPECT_TRUE(layer.merged());
  EXPECT_LT(max_rel_diff(layer.forward(X), Y), 1e-14);
  layer.unmerge();
  EXPECT_LT(max_rel_diff(layer.base().weight(), W), 1e-14);
  EXPECT_DOUBLE_EQ(layer.flops(4), 4.0 * 4 * 6 * 5 + 3.0 * 4 * 6);
}

TEST(Adapted, DeltaThenOutputEditInThatOrder) {
  Linear<double> base(random_matrix<double>(5, 6, 1), random_matrix<double>(5, 1, 2));
  const M W = base.weight();
  const Vector<double> b = base.bias();
  Adapted layer(std::move(base), DeltaAndOutputScale(6, 5));
  const M X = random_matrix<double>(4, 6, 3);
  const M D = layer.adapter().params.value(0);
  const Eigen::RowVectorXd s = layer.adapter().params.value(1).row(0);
  M h = X * (W + D).transpose();
  h.rowwise() += b.transpose();
  const M expected = (h.array().rowwise() * s.array()).matrix();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), 1e-14);
  for (const auto& e : testing::check_gradients(layer, X, random_matrix<double>(4, 5, 4)))
    EXPECT_LT(e.error, 1e-8) << e.name;
}

// PEFT's bias = "lora_only" / "all": the base bias trained beside the
// adapter (through an output edit, so its gradient is taken after the edit's
// backward), merged with the base, and guarded by unmerge.
TEST(Adapted, TrainableBaseBias) {
  Linear<double> base(random_matrix<double>(5, 6, 1), random_matrix<double>(5, 1, 2));
  Adapted layer(std::move(base), DeltaAndOutputScale(6, 5));
  EXPECT_FALSE(layer.base_bias_trainable());
  const Index adapter_params = layer.num_params();
  layer.set_base_bias_trainable(true);
  EXPECT_EQ(layer.num_params(), adapter_params + 5);
  const auto params = layer.parameters();
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params.back().name, "base_layer.bias");
  EXPECT_EQ(params.back().value.data(), layer.base().bias().data());
  const M X = random_matrix<double>(4, 6, 3);
  const auto errors = testing::check_gradients(layer, X, random_matrix<double>(4, 5, 4));
  ASSERT_EQ(errors.size(), 4u);  // X, the two adapter tensors, the bias
  for (const auto& e : errors) EXPECT_LT(e.error, 1e-8) << e.name;
  // Gradients accumulate across backward calls and zero_grad clears the bias's too.
  const M g = layer.parameters().back().grad;
  layer.backward(random_matrix<double>(4, 5, 4));
  EXPECT_LT(max_rel_diff(layer.parameters().back().grad, (2 * g).eval()), 1e-14);
  layer.zero_grad();
  EXPECT_EQ(layer.parameters().back().grad.norm(), 0.0);

  layer.set_base_bias_trainable(false);
  EXPECT_EQ(layer.parameters().size(), 2u);

  Adapted mergeable(Linear<double>(random_matrix<double>(5, 6, 1), random_matrix<double>(5, 1, 2)), InputScale(6, 5));
  mergeable.set_base_bias_trainable(true);
  const M Y = mergeable.forward(X);
  mergeable.merge();
  EXPECT_LT(max_rel_diff(mergeable.forward(X), Y), 1e-14);
  mergeable.parameters().back().value(0, 0) += 1;  // a step taken while merged
  EXPECT_PEFT_ERROR(mergeable.unmerge(), "the adapter's parameters changed while merged");
  mergeable.parameters().back().value(0, 0) -= 1;
  mergeable.unmerge();
  EXPECT_LT(max_rel_diff(mergeable.forward(X), Y), 1e-14);

  Adapted no_bias(Linear<double>(random_matrix<double>(5, 6, 1)), InputScale(6, 5));
  EXPECT_PEFT_ERROR(no_bias.set_base_bias_trainable(true),
                    "Adapted::set_base_bias_trainable: the base layer has no bias; expected a base layer with 5 bias entries");
}

TEST(Adapted, RejectsMisuse) {
  Adapted layer(Linear<double>(random_matrix<double>(5, 6, 1)), InputScale(6, 5));
  EXPECT_PEFT_ERROR(layer.backward(M::Zero(2, 5)), "Adapted::backward: called before forward");
  EXPECT_PEFT_ERROR(layer.forward(M::Zero(2, 7)), "Adapted::forward: X must have in_features = 6 columns, got 2 x 7");
  layer.forward(M::Zero(2, 6));
  EXPECT_PEFT_ERROR(layer.backward(M::Zero(3, 5)), "dY must be N x out_features = 2 x 5");
  layer.merge();
  EXPECT_PEFT_ERROR(layer.merge(), "Adapted::merge: already merged");
  EXPECT_PEFT_ERROR(layer.backward(M::Zero(2, 5)), "merged into the base; call unmerge() before training");
  layer.adapter().params.value(0)(0, 0) += 1.0;  // a step while merged
  EXPECT_PEFT_ERROR(layer.unmerge(), "parameters changed while merged");
  layer.adapter().params.value(0)(0, 0) -= 1.0;
  layer.unmerge();
  EXPECT_PEFT_ERROR(layer.unmerge(), "Adapted::unmerge: not merged");
  EXPECT_PEFT_ERROR(Adapted(Linear<double>(random_matrix<double>(5, 6, 1)), InputScale(6, 4)),
                    "Adapted: adapter is 4 x 6 (d_out x d_in) but the base layer is 5 x 6");
}

}  // namespace
}  // namespace peft::test
