// Real FFT plans: every backend, float and double, the same test bodies.
// Oracle: a naive O(n²) DFT in long double.
#include <peft/fft/fft.hpp>
#include <peft/fft/negacyclic.hpp>

#include <cmath>
#include <map>
#include <numbers>

#include "test_util.hpp"

namespace peft::test {
namespace {

using LD = long double;
using Spectrum = std::vector<std::complex<LD>>;

constexpr Index kMaxRows = 257;

/// Inputs shared by all backends: float-representable values, so float and
/// double plans see the same signal.
const Matrix<double>& signal(Index n) {
  static std::map<Index, Matrix<double>> cache;
  auto [it, fresh] = cache.try_emplace(n);
  if (fresh) it->second = random_matrix<float>(kMaxRows, n, static_cast<std::uint64_t>(n)).cast<double>();
  return it->second;
}

/// Rows checked against the naive DFT: all for small n, otherwise the ones at
/// panel boundaries (lane counts 4, 8, 16) and the ragged end.
std::vector<Index> checked_rows(Index n, Index rows) {
  std::vector<Index> out;
  for (Index r = 0; r < rows; ++r)
    if (n <= 64 || r < 2 || r == rows - 1 || r % 16 == 15 || r % 16 == 0) out.push_back(r);
  return out;
}

/// Naive half spectrum of row r of signal(n), cached.
const Spectrum& reference(Index n, Index r) {
  static std::map<std::pair<Index, Index>, Spectrum> cache;
  auto [it, fresh] = cache.try_emplace({n, r});
  if (fresh) {
    std::vector<std::complex<LD>> roots(static_cast<std::size_t>(n));
    for (Index k = 0; k < n; ++k)
      roots[static_cast<std::size_t>(k)] = std::polar(LD(1), -2 * std::numbers::pi_v<LD> * static_cast<LD>(k) / static_cast<LD>(n));
    const auto& x = signal(n);
    for (Index k = 0; k <= n / 2; ++k) {
      std::complex<LD> sum = 0;
      for (Index j = 0; j < n; ++j) sum += static_cast<LD>(x(r, j)) * roots[static_cast<std::size_t>((j * k) % n)];
      it->second.push_back(sum);
    }
  }
  return it->second;
}

/// Plans for the tests; FFTW plans with FFTW_ESTIMATE so that planning
/// hundreds of shapes stays fast (FFTW_MEASURE is for long-running users).
template <class Plan>
Plan make_plan(Index n) {
#ifdef PEFT_WITH_FFTW
  if constexpr (std::is_same_v<Plan, fft::FFTWPlan<typename Plan::Scalar>>) return Plan(n, FFTW_ESTIMATE);
#endif
  return Plan(n);
}

template <class Plan>
class FFTTest : public ::testing::Test {
 protected:
  using T = typename Plan::Scalar;
  static double tol() { return std::is_same_v<T, float> ? 1e-5 : 1e-12; }
  static std::vector<Index> lengths() {
    std::vector<Index> n(64);
    for (Index i = 0; i < 64; ++i) n[static_cast<std::size_t>(i)] = i + 1;
    for (const Index big : {96, 768, 1000, 1021, 4096}) n.push_back(big);
    return n;
  }
};

using Backends = ::testing::Types<fft::VectorizedFFT<float>, fft::VectorizedFFT<double>, fft::KissFFT<float>,
                                  fft::KissFFT<double>
#ifdef PEFT_WITH_FFTW
                                  , fft::FFTWPlan<float>, fft::FFTWPlan<double>
#endif
                                  >;
TYPED_TEST_SUITE(FFTTest, Backends);

TYPED_TEST(FFTTest, ForwardMatchesNaiveDftAndRoundTrips) {
  using T = typename TestFixture::T;
  for (const Index n : TestFixture::lengths()) {
    auto plan = make_plan<TypeParam>(n);
    ASSERT_EQ(plan.bins(), n / 2 + 1);
    for (const Index rows : {1, 3, 16, 17, 257}) {
      const Matrix<T> X = signal(n).topRows(rows).template cast<T>();
      fft::ComplexMatrix<T> S;
      fft::forward(plan, X, S);
      double err = 0, scale = 0;
      for (const Index r : checked_rows(n, rows)) {
        const Spectrum& ref = reference(n, r);
        for (Index k = 0; k < plan.bins(); ++k) {
          const auto want = ref[static_cast<std::size_t>(k)];
          const std::complex<LD> got(S(r, k).real(), S(r, k).imag());
          err = std::max(err, static_cast<double>(std::abs(got - want)));
          scale = std::max(scale, static_cast<double>(std::abs(want)));
        }
      }
      EXPECT_LE(err / scale, TestFixture::tol()) << "n = " << n << ", rows = " << rows;
      Matrix<T> back;
      fft::inverse(plan, S, back, T(1) / static_cast<T>(n));
      EXPECT_LE(max_rel_diff(back, X), TestFixture::tol()) << "round trip, n = " << n << ", rows = " << rows;
    }
  }
}

TYPED_TEST(FFTTest, LinearityAndParseval) {
  using T = typename TestFixture::T;
  for (const Index n : {7, 16, 30, 1021, 768}) {
    auto plan = make_plan<TypeParam>(n);
    const Matrix<T> x = random_matrix<T>(17, n, 1), y = random_matrix<T>(17, n, 2);
    const T a = T(0.75), b = T(-1.5);
    fft::ComplexMatrix<T> X, Y, Z;
    fft::forward(plan, x, X);
    fft::forward(plan, y, Y);
    fft::forward(plan, Matrix<T>(a * x + b * y), Z);
    const fft::ComplexMatrix<T> combined = a * X + b * Y;
    EXPECT_LE((Z - combined).cwiseAbs().maxCoeff() / combined.cwiseAbs().maxCoeff(), 10 * TestFixture::tol()) << n;
    for (Index r = 0; r < x.rows(); ++r) {
      // Σ|x|² = (1/n)·Σ_k |X_k|² over the full spectrum: interior bins count twice.
      double energy = 0;
      for (Index k = 0; k < plan.bins(); ++k) {
        const bool paired = k != 0 && !(n % 2 == 0 && k == n / 2);
        energy += (paired ? 2.0 : 1.0) * std::norm(std::complex<double>(X(r, k)));
      }
      const double direct = x.row(r).template cast<double>().squaredNorm();
      EXPECT_NEAR(energy / static_cast<double>(n), direct, 10 * TestFixture::tol() * direct) << n;
    }
  }
}

TYPED_TEST(FFTTest, StridedRowsAndRepeatedCalls) {
  using T = typename TestFixture::T;
  const Index n = 96, rows = 19;
  auto plan = make_plan<TypeParam>(n);
  // Rows taken from a wider matrix (stride > n) give the same spectra.
  const Matrix<T> wide = random_matrix<T>(rows, n + 5, 3);
  const Matrix<T> tight = wide.leftCols(n);
  fft::ComplexMatrix<T> a, b;
  fft::forward(plan, wide.leftCols(n), a);
  fft::forward(plan, tight, b);
  const double scale = b.cwiseAbs().maxCoeff();
  EXPECT_LE((a - b).cwiseAbs().maxCoeff() / scale, TestFixture::tol());
  fft::forward(plan, tight, a);  // a plan is reusable
  EXPECT_LE((a - b).cwiseAbs().maxCoeff() / scale, TestFixture::tol());
  fft::ComplexMatrix<T> wide_out(rows, plan.bins() + 3);
  plan.forward(tight.data(), n, wide_out.data(), wide_out.cols(), rows);
  EXPECT_LE((wide_out.leftCols(plan.bins()) - b).cwiseAbs().maxCoeff() / scale, TestFixture::tol());
  Matrix<T> out_wide = Matrix<T>::Zero(rows, n + 2);  // inverse into strided rows
  plan.inverse(b.data(), b.cols(), out_wide.data(), out_wide.cols(), rows, T(1) / static_cast<T>(n));
  EXPECT_LE(max_rel_diff(out_wide.leftCols(n).eval(), tight), TestFixture::tol());
  EXPECT_EQ(out_wide.rightCols(2).cwiseAbs().maxCoeff(), T(0));  // nothing written past each row
}

TYPED_TEST(FFTTest, InverseCanAccumulateIntoStridedRows) {
  using T = typename TestFixture::T;
  for (const Index n : {1, 7, 96, 1021}) {
    const Index rows = 19;  // a full panel and a ragged one for every lane width
    auto plan = make_plan<TypeParam>(n);
    const Matrix<T> x = random_matrix<T>(rows, n, 5);
    fft::ComplexMatrix<T> S;
    fft::forward(plan, x, S);
    const Matrix<T> held = random_matrix<T>(rows, n + 3, 6);
    Matrix<T> out = held;
    const T scale = T(-2) / static_cast<T>(n);
    plan.inverse(S.data(), S.cols(), out.data(), out.cols(), rows, scale, true);
    const Matrix<T> want = held.leftCols(n) + T(-2) * x;
    EXPECT_LE(max_rel_diff(out.leftCols(n).eval(), want), 10 * TestFixture::tol()) << "n = " << n;
    EXPECT_EQ(out.rightCols(3), held.rightCols(3)) << "nothing written past each row, n = " << n;
  }
}

/// plan.inverse of the spectra S (rows s_stride apart) into rows y_stride
/// apart that start `offset` reals into a buffer filled with `guard`, set and
/// then added to: the rows must be x (plus the guard when adding), and
/// nothing outside them may change.
template <class Plan, class T>
void expect_inverse_into_guarded_rows(Plan& plan, const std::complex<T>* S, Index s_stride, const Matrix<T>& x,
                                      Index y_stride, Index offset, T guard, double tol) {
  const Index rows = x.rows(), n = x.cols();
  for (const bool accumulate : {false, true}) {
    std::vector<T> y_buffer(static_cast<std::size_t>(rows * y_stride + 16 + offset), guard);
    T* Y = y_buffer.data() + offset;
    plan.inverse(S, s_stride, Y, y_stride, rows, T(1) / static_cast<T>(n), accumulate);
    double y_err = 0;
    for (Index r = 0; r < rows; ++r)
      for (Index j = 0; j < n; ++j)
        y_err = std::max<double>(y_err, std::abs(Y[r * y_stride + j] - ((accumulate ? guard : T(0)) + x(r, j))));
    EXPECT_LE(y_err, 10 * tol * (accumulate ? std::abs(double(guard)) : 1.0)) << "accumulate " << accumulate;
    for (std::size_t i = 0; i < y_buffer.size(); ++i) {
      const Index at = static_cast<Index>(i) - offset;
      const bool inside = at >= 0 && at / y_stride < rows && at % y_stride < n;
      if (!inside) {
        ASSERT_EQ(y_buffer[i], guard) << "inverse wrote outside its rows at " << at << ", accumulate " << accumulate;
      }
    }
  }
}

// Rows may start anywhere: a half spectrum of n/2 + 1 bins never keeps the
// next row on a cache line, and users pass sub-blocks of their own buffers.
// Every base offset within a 64-byte line, strides that shift each row's
// offset, full panels and a ragged one; the padding between rows and around
// the block must be left alone, with and without accumulation.
TYPED_TEST(FFTTest, RowsAtEveryAlignmentAndNothingWrittenOutside) {
  using T = typename TestFixture::T;
  using Complex = std::complex<T>;
  constexpr T kGuard = T(1234.5);
  const Index rows = 35;  // two full panels of 16 floats, four of 8 doubles, then a ragged one
  for (const Index n : {64, 96, 250}) {
    auto plan = make_plan<TypeParam>(n);
    const Index bins = plan.bins();
    const Matrix<T> x = random_matrix<T>(rows, n, 11);
    fft::ComplexMatrix<T> want;
    fft::forward(plan, x, want);
    const double scale = want.cwiseAbs().maxCoeff();
    for (Index offset = 0; offset < 16; ++offset)
      for (const Index pad : {0, 1, 3}) {
        SCOPED_TRACE(::testing::Message() << "n = " << n << ", offset = " << offset << ", pad = " << pad);
        // Forward into complex rows starting `offset` reals into a buffer.
        const Index s_stride = bins + pad;
        std::vector<T> s_buffer(static_cast<std::size_t>(2 * (rows * s_stride + 8) + offset), kGuard);
        auto* S = reinterpret_cast<Complex*>(s_buffer.data() + offset);  // complex<T> is aligned as T
        plan.forward(x.data(), n, S, s_stride, rows);
        double err = 0;
        for (Index r = 0; r < rows; ++r)
          for (Index k = 0; k < bins; ++k) err = std::max<double>(err, std::abs(S[r * s_stride + k] - want(r, k)));
        EXPECT_LE(err / scale, TestFixture::tol());
        for (std::size_t i = 0; i < s_buffer.size(); ++i) {
          const Index at = static_cast<Index>(i) - offset;  // in reals, from S
          const bool inside = at >= 0 && at / 2 / s_stride < rows && (at / 2) % s_stride < bins;
          if (!inside) {
            ASSERT_EQ(s_buffer[i], kGuard) << "forward wrote outside its rows at real " << at;
          }
        }
        // Inverse (and accumulate) into real rows starting `offset` reals in.
        expect_inverse_into_guarded_rows(plan, S, s_stride, x, n + pad, offset, kGuard, TestFixture::tol());
      }
  }
}

// Rows 4 KiB apart start in the same L1 set; when they are also off a line
// boundary, ours reads the first rows of a panel through a stage, one row at
// a time (lanes.hpp). Input rows, spectra and output rows (set or added to)
// at such strides, several offsets within a line, lengths whose blocks fill
// a partial last chunk (n = 1000) or whole ones (1024), and a ragged last
// panel: the transforms equal those of contiguous rows, and nothing outside
// the rows changes.
TYPED_TEST(FFTTest, RowsThatShareL1SetsAtAnyAlignment) {
  using T = typename TestFixture::T;
  using Complex = std::complex<T>;
  constexpr T kGuard = T(-77.25);
  const Index rows = 35;
  const auto page_multiple = [](Index count, Index size) {  // count elements of `size` bytes, rounded up to 4 KiB
    const Index per_page = 4096 / size;
    return (count + per_page - 1) / per_page * per_page;
  };
  for (const Index n : {1000, 1024}) {
    auto plan = make_plan<TypeParam>(n);
    const Index bins = plan.bins();
    const Index x_stride = page_multiple(n, sizeof(T)), s_stride = page_multiple(bins, sizeof(Complex));
    const Matrix<T> x = random_matrix<T>(rows, n, 5);
    fft::ComplexMatrix<T> want;
    fft::forward(plan, x, want);
    const double scale = want.cwiseAbs().maxCoeff();
    for (const Index offset : {0, 1, 3, 8}) {
      SCOPED_TRACE(::testing::Message() << "n = " << n << ", offset = " << offset);
      std::vector<T> x_buffer(static_cast<std::size_t>(rows * x_stride + offset), kGuard);
      T* X = x_buffer.data() + offset;
      for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < n; ++j) X[r * x_stride + j] = x(r, j);
      std::vector<T> s_buffer(static_cast<std::size_t>(2 * rows * s_stride + offset), kGuard);
      auto* S = reinterpret_cast<Complex*>(s_buffer.data() + offset);
      plan.forward(X, x_stride, S, s_stride, rows);
      double err = 0;
      for (Index r = 0; r < rows; ++r)
        for (Index k = 0; k < bins; ++k) err = std::max<double>(err, std::abs(S[r * s_stride + k] - want(r, k)));
      EXPECT_LE(err / scale, TestFixture::tol());
      for (std::size_t i = 0; i < s_buffer.size(); ++i) {
        const Index at = static_cast<Index>(i) - offset;
        if (at < 0 || (at / 2) % s_stride >= bins) {
          ASSERT_EQ(s_buffer[i], kGuard) << "forward wrote at real " << at;
        }
      }
      expect_inverse_into_guarded_rows(plan, S, s_stride, x, x_stride, offset, kGuard, TestFixture::tol());
    }
  }
}

// Bin-major spectra (C3A's per-frequency layout): the transpose of the
// row-major ones, and the inverse reads them back, adding into rows.
TYPED_TEST(FFTTest, BinMajorSpectraAreTheTransposedRowSpectra) {
  using T = typename TestFixture::T;
  for (const Index n : {1, 7, 64, 96}) {
    auto plan = make_plan<TypeParam>(n);
    for (const Index rows : {1, 19, 33}) {
      const Matrix<T> x = random_matrix<T>(rows, n, 8);
      fft::ComplexMatrix<T> S, bin_major, scratch;
      fft::forward(plan, x, S);
      fft::forward_bin_major(plan, x.data(), rows, bin_major, scratch);
      ASSERT_EQ(bin_major.rows(), plan.bins());
      ASSERT_EQ(bin_major.cols(), rows);
      EXPECT_LE((bin_major - S.transpose()).cwiseAbs().maxCoeff(), 1e-6 * std::max<double>(1, S.cwiseAbs().maxCoeff()))
          << "n = " << n << ", rows = " << rows;
      const Matrix<T> held = random_matrix<T>(rows, n, 9);
      Matrix<T> out = held;
      fft::inverse_bin_major(plan, bin_major, out.data(), T(2) / static_cast<T>(n), true, scratch);
      EXPECT_LE(max_rel_diff(out, (held + T(2) * x).eval()), 10 * TestFixture::tol()) << "n = " << n;
    }
  }
}

// The negacyclic transform on each backend (our engine's right-angle fold for
// even n, the zero-padded 2n real FFT otherwise): each kept bin against its
// naive sum, the round trip, and accumulation into strided rows.
TYPED_TEST(FFTTest, NegacyclicBinsMatchNaiveSumsAndRoundTrip) {
  using T = typename TestFixture::T;
  for (const Index n : {1, 2, 3, 4, 7, 8, 30, 96, 105, 768, 1000, 1024, 4096}) {
    fft::NegacyclicFFT<T, TypeParam> plan(n);
    ASSERT_EQ(plan.bins(), (n + 1) / 2);
    std::vector<std::complex<LD>> roots(static_cast<std::size_t>(2 * n));  // e^{−iπp/n}
    for (Index p = 0; p < 2 * n; ++p)
      roots[static_cast<std::size_t>(p)] = std::polar(LD(1), -std::numbers::pi_v<LD> * static_cast<LD>(p) / static_cast<LD>(n));
    for (const Index rows : {1, 17, 33}) {
      const Matrix<T> X = signal(n).topRows(rows).template cast<T>();
      fft::ComplexMatrix<T> S;
      fft::forward(plan, X, S);
      double err = 0, scale = 0;
      for (const Index r : {Index{0}, rows - 1})
        for (Index k = 0; k < plan.bins(); ++k) {
          std::complex<LD> want = 0;
          for (Index j = 0; j < n; ++j)
            want += static_cast<LD>(X(r, j)) * roots[static_cast<std::size_t>((j * plan.frequency(k)) % (2 * n))];
          err = std::max(err, static_cast<double>(std::abs(std::complex<LD>(S(r, k).real(), S(r, k).imag()) - want)));
          scale = std::max(scale, static_cast<double>(std::abs(want)));
        }
      EXPECT_LE(err / scale, TestFixture::tol()) << "n = " << n << ", rows = " << rows;
      Matrix<T> back;
      fft::inverse(plan, S, back, T(1) / static_cast<T>(n));
      EXPECT_LE(max_rel_diff(back, X), TestFixture::tol()) << "round trip, n = " << n << ", rows = " << rows;
      const Matrix<T> held = random_matrix<T>(rows, n + 3, 7);
      Matrix<T> out = held;
      plan.inverse(S.data(), S.cols(), out.data(), out.cols(), rows, T(3) / static_cast<T>(n), true);
      EXPECT_LE(max_rel_diff(out.leftCols(n).eval(), (held.leftCols(n) + T(3) * X).eval()), 10 * TestFixture::tol());
      EXPECT_EQ(out.rightCols(3), held.rightCols(3)) << "nothing written past each row, n = " << n;
    }
  }
}

/// The engine's complex FFT of length m on its own (complex_plan.hpp:
/// Stockham for 2,3,5-smooth m, Bluestein otherwise). Lanes hold different
/// signals; the first and last lane are checked against a naive DFT in long
/// double, forward and inverse (every bin up to m = 2048, every 61st above).
template <class T>
void check_complex_fft(Index m) {
  using C = fft::detail::LaneComplex<T>;
  constexpr int L = fft::detail::Lanes<T>::count;
  const Matrix<double> re = random_matrix<float>(L, m, static_cast<std::uint64_t>(m)).cast<double>();
  const Matrix<double> im = random_matrix<float>(L, m, static_cast<std::uint64_t>(m) + 1).cast<double>();
  fft::detail::ComplexPlan<T> plan(m);
  std::vector<C> x(static_cast<std::size_t>(m)), scratch(static_cast<std::size_t>(plan.scratch_size()));
  for (const bool inverse : {false, true}) {
    for (Index j = 0; j < m; ++j)
      for (int l = 0; l < L; ++l) {
        x[static_cast<std::size_t>(j)].re[l] = static_cast<T>(re(l, j));
        x[static_cast<std::size_t>(j)].im[l] = static_cast<T>(im(l, j));
      }
    if (inverse) plan.template transform<true>(x.data(), scratch.data());
    else plan.template transform<false>(x.data(), scratch.data());
    std::vector<std::complex<LD>> roots(static_cast<std::size_t>(m));
    for (Index k = 0; k < m; ++k)
      roots[static_cast<std::size_t>(k)] =
          std::polar(LD(1), (inverse ? 2 : -2) * std::numbers::pi_v<LD> * static_cast<LD>(k) / static_cast<LD>(m));
    for (const int l : {0, L - 1}) {
      double err = 0, scale = 0;
      for (Index k = 0; k < m; k += m <= 2048 ? 1 : 61) {
        std::complex<LD> want = 0;
        for (Index j = 0; j < m; ++j)
          want += std::complex<LD>(re(l, j), im(l, j)) * roots[static_cast<std::size_t>((j * k) % m)];
        const std::complex<LD> got(x[static_cast<std::size_t>(k)].re[l], x[static_cast<std::size_t>(k)].im[l]);
        err = std::max(err, static_cast<double>(std::abs(got - want)));
        scale = std::max(scale, static_cast<double>(std::abs(want)));
      }
      const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
      EXPECT_LE(err / scale, tol)
          << "m = " << m << ", lane " << l << (inverse ? ", inverse" : ", forward");
    }
  }
}

TEST(FFT, ComplexTransformsMatchNaiveDft) {
  // Every radix (8, 4, 6, 2, 3, 5), every fused pair (8·8, 8·4, 8·6, 8·2:
  // 256, 288, 384, 512, 720, 1024, 2048) and Bluestein lengths (prime, and 2·prime).
  // 8192 has three passes, the last in place.
  for (const Index m : {1, 2, 5, 6, 18, 48, 96, 135, 243, 256, 288, 384, 512, 625, 720, 1024, 1125, 2048, 8192, 7,
                        97, 1021, 2 * 509}) {
    check_complex_fft<float>(m);
    check_complex_fft<double>(m);
  }
}

/// The padded layout (fft::detail::PanelLayout) only moves elements: a
/// transform taking or giving x padded must give bitwise the same numbers as
/// the natural one, and never touch the gaps.
template <class T>
void check_padded_layouts(Index m) {
  using C = fft::detail::LaneComplex<T>;
  using Layout = fft::detail::PanelLayout;
  constexpr int L = fft::detail::Lanes<T>::count;
  fft::detail::ComplexPlan<T> plan(m);
  const Layout pad = plan.signal_layout();
  ASSERT_FALSE(pad.natural()) << "m = " << m << " should be padded";
  ASSERT_GT(pad.extent(m), m);
  const Matrix<T> values = random_matrix<T>(2 * L, m, static_cast<std::uint64_t>(m) + 7);
  const T kGap = T(-12345);
  const auto fill = [&](Layout layout) {  // room for either layout, as a panel buffer has
    std::vector<C> x(static_cast<std::size_t>(pad.extent(m)));
    for (auto& e : x) e.re = e.im = typename fft::detail::Lanes<T>::type{} + kGap;
    for (Index j = 0; j < m; ++j)
      for (int l = 0; l < L; ++l) {
        x[static_cast<std::size_t>(layout.slot(j))].re[l] = values(l, j);
        x[static_cast<std::size_t>(layout.slot(j))].im[l] = values(L + l, j);
      }
    return x;
  };
  std::vector<C> scratch(static_cast<std::size_t>(plan.scratch_size()));
  for (const bool inverse : {false, true}) {
    std::vector<C> want = fill(Layout{});
    if (inverse) plan.template transform<true>(want.data(), scratch.data());
    else plan.template transform<false>(want.data(), scratch.data());
    for (const Layout in : {Layout{}, pad})
      for (const Layout out : {Layout{}, pad}) {
        std::vector<C> x = fill(in);
        if (inverse) plan.template transform<true>(x.data(), scratch.data(), in, out);
        else plan.template transform<false>(x.data(), scratch.data(), in, out);
        for (Index j = 0; j < m; ++j)
          for (int l = 0; l < L; ++l) {
            const C& got = x[static_cast<std::size_t>(out.slot(j))];
            const C& ref = want[static_cast<std::size_t>(j)];
            ASSERT_EQ(got.re[l], ref.re[l]) << "m = " << m << ", element " << j << ", in padded " << !in.natural()
                                            << ", out padded " << !out.natural() << (inverse ? ", inverse" : "");
            ASSERT_EQ(got.im[l], ref.im[l]) << "m = " << m << ", element " << j;
          }
        if (in == pad && out == pad) {  // the gaps are left alone
          for (Index j = 0; j < static_cast<Index>(x.size()); ++j) {
            if ((j + 1) % ((Index{1} << pad.shift) + 1) != 0) continue;
            ASSERT_EQ(x[static_cast<std::size_t>(j)].re[0], kGap) << "gap " << j << " written, m = " << m;
          }
        }
      }
  }
}

TEST(FFT, PaddedLayoutsGiveTheSameTransforms) {
  // The smallest padded length (three unfused passes), two fused passes
  // (512, 1024, 2048: n = 4096), and three fused passes.
  for (const Index m : {256, 512, 1024, 2048, 8192}) {
    check_padded_layouts<float>(m);
    check_padded_layouts<double>(m);
  }
  // Short lengths and Bluestein keep the natural layout.
  EXPECT_TRUE(fft::detail::ComplexPlan<float>(128).signal_layout().natural());
  EXPECT_TRUE(fft::detail::ComplexPlan<float>(1021).signal_layout().natural());
  EXPECT_TRUE(fft::detail::ComplexPlan<double>(768).signal_layout().natural());
}

TEST(FFT, RejectsBadInput) {
  EXPECT_PEFT_ERROR(fft::VectorizedFFT<float>(0), "VectorizedFFT: length must be >= 1, got 0");
  EXPECT_PEFT_ERROR(fft::KissFFT<double>(-3), "KissFFT: length must be >= 1, got -3");
  EXPECT_PEFT_ERROR(fft::NegacyclicFFT<float>(0), "NegacyclicFFT: size must be >= 1, got 0");
  fft::VectorizedFFT<float> odd(7);
  std::vector<float> x(7);
  std::vector<std::complex<float>> s(4);
  EXPECT_PEFT_ERROR(odd.negacyclic_forward(x.data(), 7, s.data(), 4, 1),
                    "VectorizedFFT::negacyclic_forward: the negacyclic transform needs an even length, got n = 7");
  fft::RealFFT<double> plan(8);
  fft::ComplexMatrix<double> S;
  EXPECT_PEFT_ERROR(fft::forward(plan, Matrix<double>::Zero(2, 9), S), "fft::forward: rows must have the plan's length 8, got 2 x 9");
  Matrix<double> X;
  EXPECT_PEFT_ERROR(fft::inverse(plan, fft::ComplexMatrix<double>::Zero(2, 4), X, 1.0),
                    "fft::inverse: spectra must have the plan's 5 bins, got 2 x 4");
}

}  // namespace
}  // namespace peft::test
