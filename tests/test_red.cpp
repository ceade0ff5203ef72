// RED: H' = H ⊙ s + β on the layer's output.
#include <peft/adapters/red.hpp>

#include "adapter_checks.hpp"

namespace peft::test {
namespace {

template <class T>
class REDTest : public ::testing::Test {};
TYPED_TEST_SUITE(REDTest, Precisions);

static_assert(Adapter<RED<float>> && Mergeable<RED<double>> && EditsOutput<RED<double>> && !AddsDelta<RED<double>>);

template <class T>
void randomise(RED<T>& red) {
  for (auto& p : red.parameters()) p.value = random_matrix<T>(p.value.rows(), p.value.cols(), 7) + Matrix<T>::Ones(p.value.rows(), p.value.cols());
}

TYPED_TEST(REDTest, ForwardEqualsDenseReference) {
  using T = TypeParam;
  auto layer = wrap(RED<T>(24, 16));
  randomise(layer.adapter());
  const Matrix<T> X = random_matrix<T>(5, 24, 3);
  const Eigen::RowVectorXd s = layer.adapter().scale().template cast<double>();
  const Eigen::RowVectorXd beta = layer.adapter().bias().template cast<double>();
  Matrix<double> H = X.template cast<double>() * layer.base().weight().template cast<double>().transpose();
  H.rowwise() += layer.base().bias().template cast<double>().transpose();
  const Matrix<double> expected = (H.array().rowwise() * s.array()).matrix().rowwise() + beta;
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  EXPECT_EQ(layer.adapter().num_params(), 32);
}

TYPED_TEST(REDTest, IdentityAtInitAndMergeRoundTrip) {
  using T = TypeParam;
  for (const bool base_bias : {true, false})
    for (const REDConfig config : {REDConfig{}, REDConfig{.scale = true, .bias = false}, REDConfig{.scale = false, .bias = true}}) {
      auto layer = wrap(RED<T>(24, 16, config), base_bias);
      expect_identity_at_init(layer, 4);
      randomise(layer.adapter());
      expect_merge_round_trip(layer, 4);
    }
}

TEST(RED, GradientsMatchFiniteDifferences) {
  for (const REDConfig config : {REDConfig{}, REDConfig{.scale = true, .bias = false}, REDConfig{.scale = false, .bias = true}}) {
    auto layer = wrap(RED<double>(24, 16, config));
    randomise(layer.adapter());
    expect_gradients_match(layer, 5);
  }
}

TEST(RED, RejectsBadInput) {
  EXPECT_PEFT_ERROR(RED<double>(4, 4, {.scale = false, .bias = false}), "RED: at least one of scale and bias must be trained");
  EXPECT_PEFT_ERROR(RED<double>(0, 4), "RED: d_in and d_out must be positive");
  auto layer = wrap(RED<double>(6, 4));
  layer.adapter().parameters()[0].value(0, 2) = 0.0;
  layer.merge();
  EXPECT_PEFT_ERROR(layer.unmerge(), "RED::unmerge_from: red_scale has a zero entry");
  RED<double> red(6, 4);
  Matrix<double> H(3, 5);
  EXPECT_PEFT_ERROR(red.forward_output(H), "RED::forward_output: H must have d_out = 4 columns, got 3 x 5");
  Matrix<double> good = Matrix<double>::Zero(3, 4), dH = Matrix<double>::Zero(3, 5);
  red.forward_output(good);
  EXPECT_PEFT_ERROR(red.backward_output(dH), "RED::backward_output: dH must be 3 x 4 (N x d_out of the last forward), got 3 x 5");
  RED<double> bias_only(6, 4, {.scale = false, .bias = true});
  EXPECT_PEFT_ERROR(bias_only.backward_output(dH), "RED::backward_output: dH must have d_out = 4 columns, got 3 x 5");
}

}  // namespace
}  // namespace peft::test
