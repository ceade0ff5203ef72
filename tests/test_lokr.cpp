// LoKr: ΔW = (α/r)·(W1 ⊗ W2), applied through reshapes, as PEFT 0.21.
#include <peft/adapters/lokr.hpp>

#include "adapter_checks.hpp"
#include "golden_case.hpp"

namespace peft::test {
namespace {

template <class T>
class LoKrTest : public ::testing::Test {};
TYPED_TEST_SUITE(LoKrTest, Precisions);

static_assert(Adapter<LoKr<float>> && Mergeable<LoKr<double>>);

TEST(LoKr, FactorizationFollowsPeft) {
  using P = std::pair<Index, Index>;
  EXPECT_EQ(lokr_factorization(256), P(16, 16));
  EXPECT_EQ(lokr_factorization(128), P(8, 16));
  EXPECT_EQ(lokr_factorization(127), P(1, 127));
  EXPECT_EQ(lokr_factorization(128, 4), P(4, 32));
  EXPECT_EQ(lokr_factorization(48), P(6, 8));
  EXPECT_EQ(lokr_factorization(40), P(5, 8));
  EXPECT_EQ(lokr_factorization(4096), P(64, 64));
  EXPECT_EQ(lokr_factorization(768), P(24, 32));
}

// Dense Kronecker product, the independent oracle.
Matrix<double> kron(const Matrix<double>& a, const Matrix<double>& b) {
  Matrix<double> k(a.rows() * b.rows(), a.cols() * b.cols());
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) k.block(i * b.rows(), j * b.cols(), b.rows(), b.cols()) = a(i, j) * b;
  return k;
}

TYPED_TEST(LoKrTest, ForwardMatchesTheDenseKroneckerProduct) {
  using T = TypeParam;
  for (const bool decompose_both : {false, true}) {
    // r = 2 at 48 -> 64: W2 (8 x 8) decomposes; W1 (8 x 6) too when decompose_both.
    auto layer = wrap(LoKr<T>(48, 64, {.r = 2, .alpha = 3, .decompose_both = decompose_both, .init = LoKrInit::Random}));
    const auto& lokr = layer.adapter();
    EXPECT_EQ(layer.adapter().parameters().size(), decompose_both ? 4u : 3u);
    const Matrix<double> expected = 1.5 * kron(lokr.w1().template cast<double>(), lokr.w2().template cast<double>());
    EXPECT_LT(max_rel_diff(lokr.delta_weight(), expected), tolerance<T>());
    expect_forward_matches_delta_weight(layer, 5);
    expect_merge_round_trip(layer, 5);
  }
  auto fresh = wrap(LoKr<T>(48, 64, {.r = 4}));
  expect_identity_at_init(fresh, 3);
  auto lycoris = wrap(LoKr<T>(48, 64, {.r = 2, .init = LoKrInit::Lycoris}));
  expect_identity_at_init(lycoris, 3);
}

TEST(LoKr, GradientsMatchFiniteDifferences) {
  for (const bool decompose_both : {false, true})
    for (const Index r : {2, 8}) {
      auto layer = wrap(LoKr<double>(48, 40, {.r = r, .alpha = 3, .decompose_both = decompose_both, .init = LoKrInit::Random}));
      expect_gradients_match(layer, 4);
    }
}

TEST(LoKr, RankDropoutDropsOutputFeatures) {
  auto layer = wrap(LoKr<double>(48, 64, {.r = 8, .rank_dropout = 0.5, .init = LoKrInit::Random, .seed = 3}));
  const Matrix<double> X = random_matrix<double>(3, 48, 1);
  const Matrix<double> delta = layer.forward(X) - layer.base().forward(X);
  const Matrix<double> full = X * layer.adapter().delta_weight().transpose();
  Index dropped = 0;
  for (Index j = 0; j < 64; ++j) {
    if (delta.col(j).norm() == 0.0) ++dropped;
    else EXPECT_LT(max_rel_diff(delta.col(j), full.col(j)), 1e-12);
  }
  EXPECT_GT(dropped, 10);
  EXPECT_LT(dropped, 54);
  layer.set_training(false);
  expect_forward_matches_delta_weight(layer, 3);
}

TEST(LoKr, ReproducesPeftGolden) {
  GoldenCase golden("lokr_f64");
  const LoKrConfig config{.r = 4, .alpha = 8, .init = LoKrInit::Random};
  Adapted fc1(golden.base("fc1"), LoKr<double>(48, 64, config));
  Adapted fc2(golden.base("fc2"), LoKr<double>(64, 40, config));
  for (auto [module, layer] : {std::pair{"fc1", &fc1}, std::pair{"fc2", &fc2}})
    for (auto& p : layer->adapter().parameters()) {
      const Matrix<double> saved = golden.saved(module, std::string(p.name));
      ASSERT_EQ(saved.rows(), p.value.rows()) << p.name;
      ASSERT_EQ(saved.cols(), p.value.cols()) << p.name;
      p.value = saved;
    }
  golden.check(fc1, fc2, 1e-10, [](const std::string&, std::string_view name) { return std::string(name) + ".default"; });
}

TEST(LoKr, RejectsBadInput) {
  EXPECT_PEFT_ERROR(LoKr<double>(48, 64, {.r = 0}), "LoKr: r must be >= 1, got 0");
  EXPECT_PEFT_ERROR(LoKr<double>(48, 64, {.alpha = 0}), "LoKr: alpha must be a finite value > 0");
  EXPECT_PEFT_ERROR(LoKr<double>(48, 64, {.decompose_factor = 0}), "LoKr: decompose_factor must be -1 or positive, got 0");
  EXPECT_PEFT_ERROR(LoKr<double>(48, 64, {.rank_dropout = 1}), "LoKr: rank_dropout must be in [0, 1)");
  LoKr<double> lokr(48, 64, {});
  Matrix<double> Y(2, 64);
  EXPECT_PEFT_ERROR(lokr.forward_delta(Matrix<double>::Zero(2, 40), Y), "LoKr::forward_delta: expected X with d_in = 48");
  Matrix<double> dX(2, 48);
  EXPECT_PEFT_ERROR(lokr.backward_delta(Matrix<double>::Zero(2, 64), dX), "LoKr::backward_delta: dY must be -1 x 64");
}

}  // namespace
}  // namespace peft::test
