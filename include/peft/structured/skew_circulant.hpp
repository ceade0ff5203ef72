#pragma once
// Skew-circulant (negacyclic) products through a real FFT of length 2n and a fold.
//   Skew(h)[i][j] = h[i − j] if i ≥ j, −h[n + i − j] otherwise   (first column h)
// With h and x zero-padded to 2n, z = irfft_2n(ĥ ⊙ x̂) is their linear
// convolution and y_k = z_k − z_{k+n} folds it negacyclically. The transpose
// unfolds g to u = [g, −g]:
//   input     dx = irfft_2n(conj(ĥ) ⊙ û)[0 : n]
//   kernel    dh = irfft_2n(Σ_rows conj(x̂) ⊙ û)[0 : n]

#include <algorithm>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/structured/correlation.hpp>
#include <peft/structured/spectral.hpp>

namespace peft::structured {

/// The dense n x n matrix Skew(h), the oracle for tests.
template <class T>
Matrix<T> skew_circulant_dense(const Eigen::Ref<const Vector<T>>& h) {
  const Index n = h.size();
  Matrix<T> M(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) M(i, j) = i >= j ? h[i - j] : -h[n + i - j];
  return M;
}

template <class T, class Plan = fft::RealFFT<T>>
class SkewCirculant {
 public:
  explicit SkewCirculant(Index n) : n_(checked_size(n)), plan_(2 * n) {
    h_hat_.resize(bins());
    pad_.setZero(1, 2 * n);
  }

  Index size() const { return n_; }

  /// Sets h (n entries) and computes its spectrum once.
  void set_kernel(const T* h) {
    pad_.setZero(1, 2 * n_);
    std::copy(h, h + n_, pad_.data());
    plan_.forward(pad_.data(), 2 * n_, h_hat_.data(), bins(), 1);
  }

  /// Y = rows Skew(h)·x of X (N x n).
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    PEFT_REQUIRE(X.cols() == n_, "SkewCirculant::forward: X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    padded_.setZero(X.rows(), 2 * n_);
    padded_.leftCols(n_) = X;
    fft::forward(plan_, padded_, x_hat_);
    detail::multiply_rows<false, false>(x_hat_, h_hat_.data(), work_);
    fft::inverse(plan_, work_, wide_, T(1) / static_cast<T>(2 * n_));
    Y = wide_.leftCols(n_) - wide_.rightCols(n_);
  }

  /// dX = rows Skew(h)ᵀ·g of G; dh (n entries) += its gradient, with x from
  /// the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dh) {
    PEFT_REQUIRE(G.cols() == n_ && G.rows() == x_hat_.rows(), "SkewCirculant::backward: G must be ",
                 ::peft::detail::shape_str(x_hat_.rows(), n_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    padded_.resize(G.rows(), 2 * n_);
    padded_.leftCols(n_) = G;
    padded_.rightCols(n_) = -G;
    fft::forward(plan_, padded_, g_hat_);
    if (dh != nullptr) detail::add_correlation(plan_, x_hat_, g_hat_, dh, n_, correlation_);
    detail::multiply_rows<true, false>(g_hat_, h_hat_.data(), work_);
    fft::inverse(plan_, work_, wide_, T(1) / static_cast<T>(2 * n_));
    dX = wide_.leftCols(n_);
  }

 private:
  static Index checked_size(Index n) {
    PEFT_REQUIRE(n >= 1, "SkewCirculant: size must be >= 1, got ", n);
    return n;
  }
  Index bins() const { return n_ + 1; }

  Index n_;
  Plan plan_;
  Eigen::Matrix<std::complex<T>, 1, Eigen::Dynamic> h_hat_;
  detail::CorrelationScratch<T> correlation_;
  Matrix<T> pad_, padded_, wide_;
  fft::ComplexMatrix<T> x_hat_, g_hat_, work_;
};

}  // namespace peft::structured
