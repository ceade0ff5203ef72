// The dense-product backend: what gemm_backend() reports, the OpenBLAS core
// check, and the products against plain loops (built once with Eigen's GEMM,
// once more with peft::blas when PEFT_WITH_OPENBLAS is on, and once with
// peft::onednn, whose float32 matmul then runs the frozen layer's products).
#include <peft/core/gemm_backend.hpp>
#include <peft/core/linear.hpp>
#include <peft/peft.hpp>

#include <algorithm>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace peft::test {
namespace {

TEST(GemmBackend, NamesTheBackendOfThisBuild) {
  const GemmBackend b = gemm_backend();
#if defined(PEFT_WITH_OPENBLAS)
  EXPECT_EQ(b.name, "OpenBLAS");
  EXPECT_NE(b.details.find("core "), std::string::npos) << b.details;
#else
  EXPECT_EQ(b.name, "Eigen");
  EXPECT_NE(b.details.find("SIMD"), std::string::npos) << b.details;
#endif
#if defined(PEFT_WITH_ONEDNN)
  EXPECT_NE(b.linear.find("oneDNN"), std::string::npos) << b.linear;
  EXPECT_NE(b.linear.find("f32 matmul"), std::string::npos) << b.linear;
#else
  EXPECT_EQ(b.linear, b.name + " (the backend above)");
#endif
  set_gemm_threads(1);
  EXPECT_EQ(gemm_backend().threads, 1);
  EXPECT_PEFT_ERROR(set_gemm_threads(0), "set_gemm_threads: expected threads >= 1, got 0");
}

TEST(GemmBackend, WarnsWhenOpenBlasRunsAnOlderCoreThanTheCpu) {
  using detail::blas_core_warning;
  const std::string forced = blas_core_warning("Haswell", 3, "Haswell");
  EXPECT_NE(forced.find("Haswell kernels (AVX2) on a CPU with AVX-512: its GEMM may be slower"), std::string::npos) << forced;
  EXPECT_NE(forced.find("OPENBLAS_CORETYPE=Haswell"), std::string::npos) << forced;
  EXPECT_EQ(blas_core_warning("Haswell", 3, nullptr).find("OPENBLAS_CORETYPE"), std::string::npos);
  EXPECT_NE(blas_core_warning("Sandybridge", 2, "").find("(AVX) on a CPU with AVX2"), std::string::npos);
  for (const char* core : {"SkylakeX", "Cooperlake", "SapphireRapids"}) EXPECT_EQ(blas_core_warning(core, 3, nullptr), "");
  EXPECT_EQ(blas_core_warning("Zen", 2, nullptr), "");
  EXPECT_EQ(blas_core_warning("Haswell", -1, "Haswell"), "");  // CPU unknown: nothing to say
  EXPECT_EQ(detail::simd_level_of_core("Prescott"), 0);
  // Single-core builds name their core in capitals; unknown names say nothing.
  EXPECT_EQ(blas_core_warning("SKYLAKEX", 3, nullptr), "");
  EXPECT_NE(blas_core_warning("HASWELL", 3, nullptr), "");
  EXPECT_EQ(blas_core_warning("Excavator", 2, nullptr), "");
  EXPECT_NE(blas_core_warning("Piledriver", 2, nullptr).find("(AVX) on a CPU with AVX2"), std::string::npos);
  EXPECT_EQ(detail::simd_level_of_core("SomeFutureCore"), -1);
  EXPECT_EQ(blas_core_warning("SomeFutureCore", 3, nullptr), "");
}

// Y = X·Wᵀ + b and dX = dY·W against triple loops in double, at sizes that
// fit no SIMD width, for the frozen layer and a LoRA-adapted one (thin GEMMs).
template <class T>
class GemmProducts : public ::testing::Test {};
TYPED_TEST_SUITE(GemmProducts, Precisions);

template <class T>
Matrix<double> a_times_bt(const Matrix<T>& a, const Matrix<T>& b) {  // a·bᵀ
  Matrix<double> out(a.rows(), b.rows());
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < b.rows(); ++j) {
      double s = 0;
      for (Index k = 0; k < a.cols(); ++k) s += double(a(i, k)) * double(b(j, k));
      out(i, j) = s;
    }
  return out;
}

TYPED_TEST(GemmProducts, FrozenLayerMatchesLoops) {
  using T = TypeParam;
  const Index N = 37, d_in = 131, d_out = 67;
  const Matrix<T> W = random_matrix<T>(d_out, d_in, 1), X = random_matrix<T>(N, d_in, 2),
                  dY = random_matrix<T>(N, d_out, 3);
  const Vector<T> b = random_matrix<T>(d_out, 1, 4);
  Linear<T> layer(W, b);
  Matrix<double> Y = a_times_bt<T>(X, W);
  Y.rowwise() += b.template cast<double>().transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), Y), tolerance<T>());
  const Matrix<T> Wt = W.transpose();
  EXPECT_LT(max_rel_diff(layer.backward(dY), a_times_bt<T>(dY, Wt)), tolerance<T>());
}

// The rows a caller hands the layer may be a block of a wider matrix (a row
// stride larger than d_in), one row, or none; batch sizes change between
// calls (oneDNN builds one primitive per shape), with and without a bias.
TYPED_TEST(GemmProducts, FrozenLayerTakesStridedRowsAndChangingBatches) {
  using T = TypeParam;
  const Index d_in = 53, d_out = 21;
  const Matrix<T> W = random_matrix<T>(d_out, d_in, 11);
  const Vector<T> b = random_matrix<T>(d_out, 1, 12);
  const Matrix<T> wide = random_matrix<T>(9, d_in + 7, 13), wide_dY = random_matrix<T>(9, d_out + 3, 14);
  const Matrix<T> Wt = W.transpose();
  for (const bool with_bias : {true, false}) {
    Linear<T> layer(W, with_bias ? b : Vector<T>());
    Matrix<T> Y, dX;  // reused: resized between batches
    for (const Index N : {Index(9), Index(1), Index(0), Index(4)}) {
      const auto X = wide.block(0, 2, N, d_in);  // row stride d_in + 7
      const auto dY = wide_dY.block(0, 1, N, d_out);
      Matrix<double> expected = a_times_bt<T>(Matrix<T>(X), W);
      if (with_bias) expected.rowwise() += b.template cast<double>().transpose();
      layer.forward(X, Y);
      layer.backward(dY, dX);
      ASSERT_EQ(Y.rows(), N);
      ASSERT_EQ(dX.rows(), N);
      if (N == 0) continue;
      EXPECT_LT(max_rel_diff(Y, expected), tolerance<T>()) << "N = " << N << ", bias " << with_bias;
      EXPECT_LT(max_rel_diff(dX, a_times_bt<T>(Matrix<T>(dY), Wt)), tolerance<T>()) << "N = " << N;
    }
  }
}

// bias() is writable: a bias resized to the wrong length is refused, not read past its end.
TYPED_TEST(GemmProducts, FrozenLayerRefusesABiasResizedToTheWrongLength) {
  using T = TypeParam;
  Linear<T> layer(random_matrix<T>(5, 7, 21), random_matrix<T>(5, 1, 22));
  layer.bias().resize(3);
  EXPECT_PEFT_ERROR(layer.forward(random_matrix<T>(2, 7, 23)), "Linear::forward: bias must have 0 or d_out = 5 entries, got 3");
}

// Threads share one layer (each builds its own primitives and streams).
TEST(GemmProducts, FrozenLayerFromSeveralThreads) {
  const Index d = 40;
  const Linear<float> layer(random_matrix<float>(d, d, 15), random_matrix<float>(d, 1, 16));
  const Matrix<float> X = random_matrix<float>(6, d, 17);
  const Matrix<float> expected = layer.forward(X);
  std::vector<float> errors(4, 1.0f);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < errors.size(); ++t)
    threads.emplace_back([&, t] {
      float worst = 0;
      for (int rep = 0; rep < 20; ++rep) worst = std::max(worst, float(max_rel_diff(layer.forward(X), expected)));
      errors[t] = worst;
    });
  for (auto& th : threads) th.join();
  for (const float e : errors) EXPECT_EQ(e, 0.0f);
}

TYPED_TEST(GemmProducts, LoRALayerMatchesLoops) {
  using T = TypeParam;
  const Index N = 19, d_in = 45, d_out = 29, r = 3;
  Adapted<LoRA<T>> layer(Linear<T>(random_matrix<T>(d_out, d_in, 5)),
                         LoRA<T>(d_in, d_out, {.r = r, .alpha = 6, .init = LoRAInit::None, .seed = 6}));
  const Matrix<T> X = random_matrix<T>(N, d_in, 7);
  Matrix<T> W_full = layer.base().weight();
  W_full += layer.adapter().delta_weight();
  EXPECT_LT(max_rel_diff(layer.forward(X), a_times_bt<T>(X, W_full)), tolerance<T>());
  const Matrix<T> dY = random_matrix<T>(N, d_out, 8);
  const Matrix<T> W_full_t = W_full.transpose();
  EXPECT_LT(max_rel_diff(layer.backward(dY), a_times_bt<T>(dY, W_full_t)), tolerance<T>());
}

}  // namespace
}  // namespace peft::test
