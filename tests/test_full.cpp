// Full fine-tuning as an adapter: dense reference, finite differences, merge.
#include <gtest/gtest.h>

#include <peft/adapters/full.hpp>

#include "adapter_checks.hpp"
#include "test_util.hpp"

namespace peft::test {
namespace {

static_assert(Adapter<Full<float>> && Mergeable<Full<double>> && AddsDelta<Full<double>>);

TEST(Full, ForwardBackwardAndMergeMatchTheDenseLayer) {
  auto layer = wrap(Full<double>(7, 5));
  Rng rng(4);
  for (auto& p : layer.adapter().parameters()) init::normal(p.value, 0.5, rng);
  const Matrix<double> X = random_matrix<double>(6, 7, 9);
  Matrix<double> expected = X * (layer.base().weight() + layer.adapter().delta_weight()).transpose();
  expected.rowwise() += (layer.base().bias() + layer.adapter().parameters()[1].value.row(0).transpose()).transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), 1e-14);
  expect_gradients_match(layer, 6);
  expect_merge_round_trip(layer, 6);
}

TEST(Full, WeightOnlyAndErrors) {
  auto layer = wrap(Full<float>(4, 3, {.bias = false}), /*bias=*/false);
  EXPECT_EQ(layer.adapter().num_params(), 12);
  expect_identity_at_init(layer, 3);
  expect_merge_round_trip(layer, 3);
  auto biased = wrap(Full<float>(4, 3), /*bias=*/false);
  EXPECT_PEFT_ERROR(biased.merge(), "a trained bias needs a base layer with a bias");
  EXPECT_PEFT_ERROR(Full<float>(0, 3), "Full: d_in and d_out must be positive");
}

}  // namespace
}  // namespace peft::test
