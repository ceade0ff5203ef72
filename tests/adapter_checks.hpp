#pragma once
// Checks every adapter's tests share: the layer against its dense ΔW, the
// hand-written backward against central differences, merge/unmerge.

#include <peft/core/adapted.hpp>
#include <peft/testing/gradcheck.hpp>

#include "test_util.hpp"

namespace peft::test {

/// Y = X·(W + ΔW)ᵀ + b for an additive adapter.
template <class A>
void expect_forward_matches_delta_weight(Adapted<A>& layer, Index N, std::uint64_t seed = 21) {
  using T = typename A::Scalar;
  const Matrix<T> X = random_matrix<T>(N, layer.in_features(), seed);
  const Matrix<double> W = layer.base().weight().template cast<double>() +
                           layer.adapter().delta_weight().template cast<double>();
  Matrix<double> expected = X.template cast<double>() * W.transpose();
  if (layer.base().has_bias()) expected.rowwise() += layer.base().bias().template cast<double>().transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), 10 * tolerance<T>());
}

/// Every gradient (X and each parameter) within `tol` of central differences.
template <class A>
void expect_gradients_match(Adapted<A>& layer, Index N, double tol = 1e-6) {
  const auto errors = testing::check_gradients(layer, random_matrix<double>(N, layer.in_features(), 31),
                                               random_matrix<double>(N, layer.out_features(), 32));
  EXPECT_EQ(errors.size(), layer.adapter().parameters().size() + 1);
  for (const auto& e : errors) EXPECT_LT(e.error, tol) << e.name;
}

/// merge() keeps the output; unmerge() restores the weights and bias.
template <class A>
void expect_merge_round_trip(Adapted<A>& layer, Index N) {
  using T = typename A::Scalar;
  layer.set_training(false);
  const Matrix<T> X = random_matrix<T>(N, layer.in_features(), 41);
  const Matrix<T> W = layer.base().weight();
  const Vector<T> b = layer.base().bias();
  const Matrix<T> Y = layer.forward(X);
  layer.merge();
  EXPECT_LT(max_rel_diff(layer.forward(X), Y), 10 * tolerance<T>());
  layer.unmerge();
  EXPECT_LT(max_rel_diff(layer.base().weight(), W), 10 * tolerance<T>());
  EXPECT_EQ(layer.base().bias().size(), b.size());
  if (b.size()) {
    EXPECT_LT(max_rel_diff(layer.base().bias(), b), 10 * tolerance<T>());
  }
  EXPECT_LT(max_rel_diff(layer.forward(X), Y), 10 * tolerance<T>());
}

/// A freshly initialised adapter leaves the layer's output unchanged.
template <class A>
void expect_identity_at_init(Adapted<A>& layer, Index N) {
  using T = typename A::Scalar;
  const Matrix<T> X = random_matrix<T>(N, layer.in_features(), 51);
  EXPECT_LT(max_rel_diff(layer.forward(X), layer.base().forward(X)), tolerance<T>());
}

/// A layer with a random base (with or without bias) around `adapter`.
template <class A>
Adapted<A> wrap(A adapter, bool bias = true, std::uint64_t seed = 1) {
  using T = typename A::Scalar;
  const Index d_in = adapter.in_features(), d_out = adapter.out_features();
  Vector<T> b = bias ? Vector<T>(random_matrix<T>(d_out, 1, seed + 1)) : Vector<T>();
  return Adapted<A>(Linear<T>(random_matrix<T>(d_out, d_in, seed), std::move(b)), std::move(adapter));
}

}  // namespace peft::test
