// Structured products (circulant, skew-circulant, Toeplitz) against their
// dense matrices and finite differences, with every FFT backend.
#include <peft/structured/circulant.hpp>
#include <peft/structured/circulant_plus_skew.hpp>
#include <peft/structured/ldr.hpp>
#include <peft/structured/skew_circulant.hpp>
#include <peft/structured/toeplitz.hpp>
#include <peft/testing/gradcheck.hpp>

#include <tuple>

#include "test_util.hpp"

namespace peft::test {
namespace {

template <class Plan>
class StructuredTest : public ::testing::Test {
 protected:
  using T = typename Plan::Scalar;
  static double tol() { return std::is_same_v<T, float> ? 1e-4 : 1e-11; }
};

using Plans = ::testing::Types<fft::VectorizedFFT<double>, fft::VectorizedFFT<float>, fft::KissFFT<double>
#ifdef PEFT_WITH_FFTW
                               , fft::FFTWPlan<double>
#endif
                               >;
TYPED_TEST_SUITE(StructuredTest, Plans);

// 512 and 1024: panels in the padded layout (PanelLayout), with three
// unfused and two fused Stockham passes.
const Index kSizes[] = {1, 2, 3, 7, 8, 64, 768, 1000, 1021, 512, 1024};

/// forward equals dense·x and backward's dX equals G·dense, for an operator
/// `op` with kernel `k` and dense matrix M (rows out x cols in). 21 rows:
/// more than one panel of our engine, the last one ragged.
template <class T, class Op>
void expect_matches_dense(Op& op, const Matrix<T>& M, double tol, std::uint64_t seed) {
  const Matrix<T> X = random_matrix<T>(21, M.cols(), seed), G = random_matrix<T>(21, M.rows(), seed + 1);
  Matrix<T> Y, dX;
  op.forward(X, Y);
  EXPECT_LT(max_rel_diff(Y, (X.template cast<double>() * M.template cast<double>().transpose()).eval()), tol);
  op.backward(G, dX, nullptr);
  EXPECT_LT(max_rel_diff(dX, (G.template cast<double>() * M.template cast<double>()).eval()), tol);
}

/// Kernel gradient and input gradient against central differences of
/// L = Σ Y ⊙ G (double only).
template <class Op>
void expect_gradients_match(Op& op, Vector<double> kernel, Index in, Index out, Index rows = 4) {
  const Matrix<double> G = random_matrix<double>(rows, out, 7);
  Matrix<double> X = random_matrix<double>(rows, in, 8);
  Matrix<double> Y, dX;
  op.set_kernel(kernel.data());
  op.forward(X, Y);
  Vector<double> dk = Vector<double>::Zero(kernel.size());
  op.backward(G, dX, dk.data());
  auto loss = [&] {
    op.set_kernel(kernel.data());
    Matrix<double> y;
    op.forward(X, y);
    return (y.array() * G.array()).sum();
  };
  EXPECT_LT(testing::relative_error(dX, testing::numerical_gradient(loss, X)), 1e-8);
  EXPECT_LT(testing::relative_error(dk, testing::numerical_gradient(loss, kernel)), 1e-8);
}

TYPED_TEST(StructuredTest, CirculantMatchesDense) {
  using T = typename TestFixture::T;
  for (const Index n : kSizes) {
    const Vector<T> c = random_matrix<T>(n, 1, static_cast<std::uint64_t>(n));
    structured::Circulant<T, TypeParam> op(n);
    op.set_kernel(c.data());
    expect_matches_dense<T>(op, structured::circulant_dense<T>(c), TestFixture::tol(), 3);
  }
}

TYPED_TEST(StructuredTest, SkewCirculantMatchesDense) {
  using T = typename TestFixture::T;
  for (const Index n : kSizes) {
    const Vector<T> h = random_matrix<T>(n, 1, static_cast<std::uint64_t>(n));
    structured::SkewCirculant<T, TypeParam> op(n);
    op.set_kernel(h.data());
    expect_matches_dense<T>(op, structured::skew_circulant_dense<T>(h), TestFixture::tol(), 4);
  }
}

TYPED_TEST(StructuredTest, ToeplitzMatchesDense) {
  using T = typename TestFixture::T;
  for (const auto& [m, n] : {std::pair<Index, Index>{1, 1}, {3, 7}, {7, 3}, {64, 40}, {48, 64}, {7, 7}, {8, 8}, {768, 768}, {1000, 1000}, {1000, 1021}, {1024, 1024}}) {
    const Vector<T> t = random_matrix<T>(m + n - 1, 1, static_cast<std::uint64_t>(m * n));
    structured::Toeplitz<T, TypeParam> op(m, n);
    op.set_kernel(t.data());
    expect_matches_dense<T>(op, structured::toeplitz_dense<T>(t, m, n), TestFixture::tol(), 5);
  }
}

TYPED_TEST(StructuredTest, CirculantPlusSkewMatchesDense) {
  using T = typename TestFixture::T;
  for (const Index n : kSizes) {
    const Vector<T> k = random_matrix<T>(2 * n, 1, static_cast<std::uint64_t>(n + 5));
    structured::CirculantPlusSkew<T, TypeParam> op(n);
    op.set_kernel(k.data());
    expect_matches_dense<T>(op, structured::circulant_plus_skew_dense<T>(k), 2 * TestFixture::tol(), 9);
  }
}

TYPED_TEST(StructuredTest, LDRMatchesDense) {
  using T = typename TestFixture::T;
  for (const Index n : kSizes)
    for (const Index rank : {Index{1}, Index{3}}) {
      if (rank > n) continue;
      const Vector<T> k = random_matrix<T>(2 * rank * n, 1, static_cast<std::uint64_t>(n + rank));
      structured::LDR<T, TypeParam> op(n, rank);
      op.set_kernel(k.data());
      expect_matches_dense<T>(op, structured::ldr_dense<T>(k, n, rank), 3 * TestFixture::tol(), 6);
    }
}

/// Kernel gradients at lengths too long for finite differences, against
/// the same operator on Eigen's kissfft (the row path: no panels, no padded
/// layout; itself checked by finite differences above). Y is linear in each
/// kernel, so a wrong bin or lane would show at full size.
template <class T, template <class, class> class Op, class Plan, class... More>
void expect_kernel_gradient_as_kissfft(Index kernel_size, Index n, More... more) {
  Op<T, Plan> op(n, more...);
  Op<T, fft::KissFFT<T>> reference(n, more...);
  const Vector<T> k = random_matrix<T>(kernel_size, 1, static_cast<std::uint64_t>(kernel_size));
  op.set_kernel(k.data());
  reference.set_kernel(k.data());
  const Matrix<T> X = random_matrix<T>(21, n, 12), G = random_matrix<T>(21, n, 13);
  Vector<T> dk = Vector<T>::Zero(kernel_size), dk_ref = Vector<T>::Zero(kernel_size);
  Matrix<T> Y, dX;
  op.forward(X, Y);
  op.backward(G, dX, dk.data());
  reference.forward(X, Y);
  reference.backward(G, dX, dk_ref.data());
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-11;
  EXPECT_LT(max_rel_diff(dk, dk_ref), tol) << "n = " << n << ", " << kernel_size << " kernel entries";
}

TYPED_TEST(StructuredTest, KernelGradientsOfLongProductsMatchTheRowPath) {
  using T = typename TestFixture::T;
  for (const Index n : {Index{1024}, Index{4096}}) {
    expect_kernel_gradient_as_kissfft<T, structured::Circulant, TypeParam>(n, n);
    expect_kernel_gradient_as_kissfft<T, structured::SkewCirculant, TypeParam>(n, n);
    expect_kernel_gradient_as_kissfft<T, structured::CirculantPlusSkew, TypeParam>(2 * n, n);
    expect_kernel_gradient_as_kissfft<T, structured::LDR, TypeParam>(2 * 2 * n, n, Index{2});
  }
}

TYPED_TEST(StructuredTest, GradientsMatchFiniteDifferences) {
  if constexpr (std::is_same_v<typename TestFixture::T, double>) {
    for (const Index n : {1, 2, 3, 7, 8, 64}) {
      structured::Circulant<double, TypeParam> circ(n);
      expect_gradients_match(circ, random_matrix<double>(n, 1, 1), n, n);
      structured::SkewCirculant<double, TypeParam> skew(n);
      expect_gradients_match(skew, random_matrix<double>(n, 1, 2), n, n);
      structured::LDR<double, TypeParam> ldr(n, std::min<Index>(n, 2));
      expect_gradients_match(ldr, random_matrix<double>(2 * ldr.rank() * n, 1, 4), n, n);
    }
    for (const Index n : {1, 2, 7, 8}) {
      structured::CirculantPlusSkew<double, TypeParam> sum(n);
      expect_gradients_match(sum, random_matrix<double>(2 * n, 1, 8), n, n);
    }
    // Kernel gradients summed over several panels, the last one ragged.
    structured::Circulant<double, TypeParam> circ(8);
    expect_gradients_match(circ, random_matrix<double>(8, 1, 5), 8, 8, 19);
    structured::LDR<double, TypeParam> ldr(8, 2);
    expect_gradients_match(ldr, random_matrix<double>(32, 1, 6), 8, 8, 19);
    structured::CirculantPlusSkew<double, TypeParam> sum(8);
    expect_gradients_match(sum, random_matrix<double>(16, 1, 7), 8, 8, 19);
    for (const auto& [m, n] : {std::pair<Index, Index>{1, 1}, {3, 7}, {7, 3}, {16, 10}, {2, 2}, {8, 8}, {30, 30}}) {
      structured::Toeplitz<double, TypeParam> toep(m, n);
      expect_gradients_match(toep, random_matrix<double>(m + n - 1, 1, 3), n, m);
    }
  }
}

/// forward/backward with a scale and `accumulate` equal scale × the plain
/// product added to what the outputs held; the kernel gradient is scaled too.
/// Row counts change between calls (the Toeplitz padding buffers and the
/// kept spectra are reused).
template <class Op>
void expect_scaled_accumulate_matches_plain(Op& op, const Vector<double>& kernel, Index in, Index out) {
  op.set_kernel(kernel.data());
  for (const Index rows : {5, 19, 3}) {
    const Matrix<double> X = random_matrix<double>(rows, in, 11), G = random_matrix<double>(rows, out, 12);
    Matrix<double> Y, dX;
    Vector<double> dk = Vector<double>::Zero(kernel.size());
    op.forward(X, Y);
    op.backward(G, dX, dk.data());
    const Matrix<double> Y0 = random_matrix<double>(rows, out, 13), dX0 = random_matrix<double>(rows, in, 14);
    Matrix<double> Yacc = Y0, dXacc = dX0;
    Vector<double> dk_scaled = Vector<double>::Ones(kernel.size());
    op.forward(X, Yacc, -0.75, true);
    op.backward(G, dXacc, dk_scaled.data(), -0.75, true);
    EXPECT_LT(max_rel_diff(Yacc, (Y0 - 0.75 * Y).eval()), 1e-12);
    EXPECT_LT(max_rel_diff(dXacc, (dX0 - 0.75 * dX).eval()), 1e-12);
    EXPECT_LT(max_rel_diff(dk_scaled, (Vector<double>::Ones(kernel.size()) - 0.75 * dk).eval()), 1e-12);
    Matrix<double> wrong(rows + 1, out);
    EXPECT_PEFT_ERROR(op.forward(X, wrong, 1.0, true), "the output to accumulate into must be");
  }
}

TYPED_TEST(StructuredTest, ScaledAndAccumulatedProductsMatchThePlainOnes) {
  if constexpr (std::is_same_v<typename TestFixture::T, double>) {
    for (const Index n : {1, 7, 64}) {
      structured::Circulant<double, TypeParam> circ(n);
      expect_scaled_accumulate_matches_plain(circ, random_matrix<double>(n, 1, 21), n, n);
      structured::SkewCirculant<double, TypeParam> skew(n);
      expect_scaled_accumulate_matches_plain(skew, random_matrix<double>(n, 1, 23), n, n);
      structured::LDR<double, TypeParam> ldr(n, 1);
      expect_scaled_accumulate_matches_plain(ldr, random_matrix<double>(2 * n, 1, 24), n, n);
      structured::CirculantPlusSkew<double, TypeParam> sum(n);
      expect_scaled_accumulate_matches_plain(sum, random_matrix<double>(2 * n, 1, 25), n, n);
    }
    for (const auto& [m, n] : {std::pair<Index, Index>{1, 1}, {3, 7}, {16, 10}, {8, 8}}) {
      structured::Toeplitz<double, TypeParam> toep(m, n);
      expect_scaled_accumulate_matches_plain(toep, random_matrix<double>(m + n - 1, 1, 22), n, m);
    }
  }
}

/// forward, backward and the kernel gradient with `threads` threads.
template <class Op>
std::tuple<Matrix<double>, Matrix<double>, Vector<double>> run_with_threads(Op& op, const Vector<double>& kernel,
                                                                          const Matrix<double>& X,
                                                                          const Matrix<double>& G, int threads) {
  Eigen::setNbThreads(threads);
  op.set_kernel(kernel.data());
  Matrix<double> Y, dX;
  Vector<double> dk = Vector<double>::Zero(kernel.size());
  op.forward(X, Y);
  op.backward(G, dX, dk.data());
  return {Y, dX, dk};
}

/// The panels split over several threads give what one thread gives: the
/// same rows bit for bit, the kernel gradient up to the order of its sums.
template <class Op>
void expect_threads_match_one_thread(Op& op, const Vector<double>& kernel, Index in, Index out) {
  const Matrix<double> X = random_matrix<double>(37, in, 31), G = random_matrix<double>(37, out, 32);
  const auto [Y1, dX1, dk1] = run_with_threads(op, kernel, X, G, 1);
  for (const int threads : {2, 3, 8}) {
    const auto [Y, dX, dk] = run_with_threads(op, kernel, X, G, threads);
    EXPECT_EQ(Y, Y1) << threads << " threads";
    EXPECT_EQ(dX, dX1) << threads << " threads";
    EXPECT_LT(max_rel_diff(dk, dk1), 1e-13) << threads << " threads";
  }
}

TEST(Structured, PanelsSplitOverThreadsMatchOneThread) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP: the panels run on one thread";
#endif
  const int before = Eigen::nbThreads();
  const Index n = 64;  // 37 rows: five panels of 8 (double), the last ragged
  structured::Circulant<double> circ(n);
  expect_threads_match_one_thread(circ, random_matrix<double>(n, 1, 33), n, n);
  structured::CirculantPlusSkew<double> sum(n);
  expect_threads_match_one_thread(sum, random_matrix<double>(2 * n, 1, 34), n, n);
  structured::LDR<double> ldr(n, 3);
  expect_threads_match_one_thread(ldr, random_matrix<double>(6 * n, 1, 35), n, n);
  Eigen::setNbThreads(before);
}

TEST(Structured, RejectsBadShapes) {
  structured::Circulant<double> circ(8);
  Matrix<double> Y, dX;
  EXPECT_PEFT_ERROR(structured::CirculantPlusSkew<double>(0), "CirculantPlusSkew: size must be >= 1, got 0");
  structured::CirculantPlusSkew<double> sum(8);
  sum.set_kernel(Vector<double>::Ones(16).eval().data());
  EXPECT_PEFT_ERROR(sum.forward(Matrix<double>::Zero(2, 7), Y),
                    "CirculantPlusSkew::forward: X must have n = 8 columns, got 2 x 7");
  sum.forward(Matrix<double>::Zero(2, 8), Y);
  EXPECT_PEFT_ERROR(sum.backward(Matrix<double>::Zero(3, 8), dX, nullptr), "CirculantPlusSkew::backward: G must be 2 x 8");
  EXPECT_PEFT_ERROR(circ.forward(Matrix<double>::Zero(2, 7), Y), "Circulant::forward: X must have n = 8 columns, got 2 x 7");
  circ.forward(Matrix<double>::Zero(2, 8), Y);
  EXPECT_PEFT_ERROR(circ.backward(Matrix<double>::Zero(3, 8), dX, nullptr), "Circulant::backward: G must be 2 x 8");
  EXPECT_PEFT_ERROR(structured::Toeplitz<double>(0, 3), "Toeplitz: sizes must be >= 1");
  structured::Toeplitz<double> split(8, 8);  // square, even: the circulant + skew-circulant form
  split.set_kernel(Vector<double>::Ones(15).eval().data());
  EXPECT_PEFT_ERROR(split.forward(Matrix<double>::Zero(2, 7), Y), "Toeplitz::forward: X must have n = 8 columns, got 2 x 7");
  split.forward(Matrix<double>::Zero(2, 8), Y);
  EXPECT_PEFT_ERROR(split.backward(Matrix<double>::Zero(3, 8), dX, nullptr), "Toeplitz::backward: G must be 2 x 8");
  Matrix<double> wrong(3, 8);
  EXPECT_PEFT_ERROR(split.forward(Matrix<double>::Zero(2, 8), wrong, 1.0, true),
                    "Toeplitz::forward: the output to accumulate into must be 2 x 8, got 3 x 8");
  EXPECT_PEFT_ERROR(structured::SkewCirculant<double>(0), "SkewCirculant: size must be >= 1");
  EXPECT_PEFT_ERROR(structured::LDR<double>(8, 0), "LDR: displacement rank must be in [1, n] = [1, 8], got 0");
  EXPECT_PEFT_ERROR(structured::toeplitz_dense<double>(Vector<double>::Zero(3), 2, 3), "t must have m + n - 1 = 4 entries, got 3");
}

}  // namespace
}  // namespace peft::test
