// The SURM adapter and the Houlsby adapter: output edits with a nonlinearity.
#include <peft/adapters/houlsby.hpp>
#include <peft/adapters/surm_adapter.hpp>

#include "adapter_checks.hpp"

namespace peft::test {
namespace {

static_assert(Adapter<SURMAdapter<float>> && EditsOutput<SURMAdapter<double>> && !AddsDelta<SURMAdapter<double>>);
static_assert(!Mergeable<SURMAdapter<double>> && !Mergeable<Houlsby<double>> && Adapter<Houlsby<float>>);

template <class A>
void randomise(A& adapter) {
  std::uint64_t seed = 200;
  for (auto& p : adapter.parameters()) p.value = 0.5 * random_matrix<typename A::Scalar>(p.value.rows(), p.value.cols(), ++seed);
}

double activate(Activation f, double z) { return detail::activate(f, z); }

TEST(Activation, DerivativesMatchFiniteDifferences) {
  for (const Activation f : {Activation::GELU, Activation::ReLU, Activation::Identity})
    for (const double z : {-2.5, -0.3, 0.4, 1.7}) {
      const double h = 1e-6;
      EXPECT_NEAR(detail::activate_derivative(f, z), (activate(f, z + h) - activate(f, z - h)) / (2 * h), 1e-8);
    }
  EXPECT_NEAR(activate(Activation::GELU, 1.0), 0.8413447460685429, 1e-15);  // 1·Φ(1)
}

/// The whole-matrix forms (vectorised erf) against the scalar ones, over
/// z in [−12, 12] (both tails of GELU) for every activation.
template <class T>
void expect_matrix_forms_match_scalar(double tol) {
  Matrix<T> z(7, 97);
  for (Index i = 0; i < z.size(); ++i) z.data()[i] = static_cast<T>(-12.0 + 24.0 * static_cast<double>(i) / static_cast<double>(z.size() - 1));
  const Matrix<T> g = random_matrix<T>(7, 97, 5), base = random_matrix<T>(7, 97, 6);
  for (const Activation f : {Activation::GELU, Activation::ReLU, Activation::Identity}) {
    Matrix<T> out, added = base, scaled = g;
    detail::activation_into(f, z, out, false);
    detail::activation_into(f, z, added, true);
    detail::multiply_by_derivative(f, z, scaled);
    for (Index i = 0; i < z.size(); ++i) {
      const double x = static_cast<double>(z.data()[i]);
      const double value = detail::activate(f, x), slope = detail::activate_derivative(f, x);
      EXPECT_NEAR(out.data()[i], value, tol * std::max(1.0, std::abs(value))) << "z = " << x;
      EXPECT_NEAR(added.data()[i], base.data()[i] + value, tol * std::max(1.0, std::abs(value))) << "z = " << x;
      EXPECT_NEAR(scaled.data()[i], g.data()[i] * slope, tol * std::max(1.0, std::abs(g.data()[i] * slope)))
          << "z = " << x;
    }
  }
}

TEST(Activation, MatrixFormsMatchTheScalarOnes) {
  expect_matrix_forms_match_scalar<float>(4e-6);
  expect_matrix_forms_match_scalar<double>(1e-14);
}

template <class T>
class OutputAdapterTest : public ::testing::Test {};
TYPED_TEST_SUITE(OutputAdapterTest, Precisions);

TYPED_TEST(OutputAdapterTest, SURMAdapterMatchesDenseReference) {
  using T = TypeParam;
  for (const Structure s : {Structure::Circulant, Structure::SymToeplitz, Structure::Kronecker, Structure::LDR})
    for (const Activation f : {Activation::GELU, Activation::ReLU, Activation::Identity}) {
      auto fresh = wrap(SURMAdapter<T>(24, 16, {.structure = s, .rank = 2, .activation = f}));
      expect_identity_at_init(fresh, 3);
      auto layer = wrap(SURMAdapter<T>(24, 16, {.structure = s, .rank = 2, .alpha = 0.8, .activation = f}));
      randomise(layer.adapter());
      const Matrix<T> X = random_matrix<T>(5, 24, 3);
      Matrix<double> H = X.template cast<double>() * layer.base().weight().template cast<double>().transpose();
      H.rowwise() += layer.base().bias().template cast<double>().transpose();
      const Matrix<double> M = layer.adapter().structured_matrix().template cast<double>();
      Matrix<double> expected = H + (H * M.transpose()).unaryExpr([f](double z) { return activate(f, z); });
      expected.rowwise() += layer.adapter().parameters().back().value.row(0).template cast<double>();
      EXPECT_LT(max_rel_diff(layer.forward(X), expected), 10 * tolerance<T>());
    }
}

TYPED_TEST(OutputAdapterTest, HoulsbyMatchesDenseReference) {
  using T = TypeParam;
  auto fresh = wrap(Houlsby<T>(24, 16, {.bottleneck = 4}));
  expect_identity_at_init(fresh, 3);
  EXPECT_EQ(fresh.adapter().num_params(), 4 * 16 + 4 + 16 * 4 + 16);
  auto layer = wrap(Houlsby<T>(24, 16, {.bottleneck = 4}));
  randomise(layer.adapter());
  auto p = layer.adapter().parameters();
  const Matrix<T> X = random_matrix<T>(5, 24, 3);
  Matrix<double> H = X.template cast<double>() * layer.base().weight().template cast<double>().transpose();
  H.rowwise() += layer.base().bias().template cast<double>().transpose();
  Matrix<double> a = H * p[0].value.template cast<double>().transpose();
  a.rowwise() += p[1].value.row(0).template cast<double>();
  Matrix<double> expected = H + a.unaryExpr([](double z) { return activate(Activation::GELU, z); }) *
                                    p[2].value.template cast<double>().transpose();
  expected.rowwise() += p[3].value.row(0).template cast<double>();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), 10 * tolerance<T>());
}

TEST(OutputAdapters, GradientsMatchFiniteDifferences) {
  for (const Structure s : {Structure::Circulant, Structure::SymToeplitz, Structure::Toeplitz, Structure::Kronecker, Structure::LDR})
    for (const Activation f : {Activation::GELU, Activation::Identity}) {
      auto layer = wrap(SURMAdapter<double>(24, 16, {.structure = s, .rank = 2, .alpha = 0.8, .activation = f}));
      randomise(layer.adapter());
      expect_gradients_match(layer, 3);
    }
  for (const Activation f : {Activation::GELU, Activation::ReLU}) {
    auto layer = wrap(Houlsby<double>(24, 16, {.bottleneck = 5, .activation = f}));
    randomise(layer.adapter());
    expect_gradients_match(layer, 3);
  }
}

TEST(OutputAdapters, RejectsBadInput) {
  EXPECT_PEFT_ERROR(Houlsby<double>(8, 8, {.bottleneck = 0}), "Houlsby: bottleneck must be >= 1, got 0");
  EXPECT_PEFT_ERROR(SURMAdapter<double>(8, 6, {.structure = Structure::Kronecker, .rank = 4}),
                    "SURM: Kronecker r must divide d_in = 6 and d_out = 6, got 4");
  EXPECT_PEFT_ERROR(SURMAdapter<double>(8, 8, {.dropout = 1.0}), "Dropout: probability must be in [0, 1)");
  SURMAdapter<double> adapter(8, 6, {});
  Matrix<double> H(2, 5);
  EXPECT_PEFT_ERROR(adapter.forward_output(H), "SURMAdapter::forward_output: H must have d_out = 6 columns, got 2 x 5");
}

}  // namespace
}  // namespace peft::test
