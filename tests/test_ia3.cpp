// IA3: output scaling, or input scaling on feed-forward modules, as PEFT 0.21.
#include <peft/adapters/ia3.hpp>

#include "adapter_checks.hpp"
#include "golden_case.hpp"

namespace peft::test {
namespace {

template <class T>
class IA3Test : public ::testing::Test {};
TYPED_TEST_SUITE(IA3Test, Precisions);

static_assert(Adapter<IA3<float>> && Mergeable<IA3<double>> && EditsInput<IA3<double>> && EditsOutput<IA3<double>>);

TYPED_TEST(IA3Test, ForwardEqualsDenseReferenceInBothModes) {
  using T = TypeParam;
  for (const bool ff : {false, true}) {
    auto layer = wrap(IA3<T>(24, 16, {.feedforward = ff, .init_ones = false, .seed = 3}));
    const Matrix<double> l = layer.adapter().l().template cast<double>();
    EXPECT_EQ(l.rows(), ff ? 1 : 16);  // PEFT's shapes: [1, d_in] or [d_out, 1]
    EXPECT_EQ(l.cols(), ff ? 24 : 1);
    const Matrix<T> X = random_matrix<T>(5, 24, 3);
    const Matrix<double> W = layer.base().weight().template cast<double>();
    const Vector<double> b = layer.base().bias().template cast<double>();
    Matrix<double> expected;
    if (ff) {
      expected = (X.template cast<double>().array().rowwise() * l.row(0).array()).matrix() * W.transpose();
      expected.rowwise() += b.transpose();
    } else {
      expected = X.template cast<double>() * W.transpose();
      expected.rowwise() += b.transpose();
      expected.array().rowwise() *= l.col(0).transpose().array();
    }
    EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
    expect_merge_round_trip(layer, 4);
    auto fresh = wrap(IA3<T>(24, 16, {.feedforward = ff}));
    expect_identity_at_init(fresh, 3);
    EXPECT_EQ(fresh.adapter().num_params(), ff ? 24 : 16);
  }
}

TEST(IA3, GradientsMatchFiniteDifferences) {
  for (const bool ff : {false, true}) {
    auto layer = wrap(IA3<double>(24, 16, {.feedforward = ff, .init_ones = false, .seed = 4}));
    expect_gradients_match(layer, 5);
  }
}

TEST(IA3, ReproducesPeftGolden) {
  GoldenCase golden("ia3_f64");
  Adapted fc1(golden.base("fc1"), IA3<double>(48, 64));
  Adapted fc2(golden.base("fc2"), IA3<double>(64, 40, {.feedforward = true}));
  fc1.adapter().l() = golden.saved("fc1", "ia3_l");
  fc2.adapter().l() = golden.saved("fc2", "ia3_l");
  golden.check(fc1, fc2, 1e-10, [](const std::string&, std::string_view name) { return std::string(name) + ".default"; });
}

TEST(IA3, RejectsBadInput) {
  EXPECT_PEFT_ERROR(IA3<double>(0, 3), "IA3: d_in and d_out must be positive");
  auto layer = wrap(IA3<double>(6, 4));
  layer.adapter().l()(1, 0) = 0.0;
  layer.merge();
  EXPECT_PEFT_ERROR(layer.unmerge(), "IA3::unmerge_from: ia3_l has a zero entry");
  IA3<double> ia3(6, 4);
  Matrix<double> H(2, 6);
  EXPECT_PEFT_ERROR(ia3.forward_output(H), "IA3::forward_output: expected 4 columns, got 2 x 6");
}

}  // namespace
}  // namespace peft::test
