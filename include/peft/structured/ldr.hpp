#pragma once
// Low-displacement-rank products, S = Σ_{i<ρ} Circ(g_i)·Skew(h_i) (n x n),
// with the spectra shared across the ρ terms:
//   forward   x̂ = rfft_2n([x, 0]) once;  per term u_i = fold(irfft_2n(ĥ_i ⊙ x̂)),
//             û_i = rfft_n(u_i);  y = irfft_n(Σ_i ĝ_i ⊙ û_i)  (one inverse for all terms)
//   backward  Ĝ = rfft_n(g) once;  dg_i = irfft_n(Σ_rows conj(û_i) ⊙ Ĝ);
//             du_i = irfft_n(conj(ĝ_i) ⊙ Ĝ),  D̂_i = rfft_2n([du_i, −du_i]);
//             dh_i = irfft_2n(Σ_rows conj(x̂) ⊙ D̂_i)[0 : n];  dx = irfft_2n(Σ_i conj(ĥ_i) ⊙ D̂_i)[0 : n]
// (fold(z)_k = z_k − z_{k+n}: the skew-circulant's negacyclic wrap; see
// skew_circulant.hpp). 2 + 2ρ transforms each way instead of 4ρ.
// The kernel is one array [g_0 .. g_{ρ−1}, h_0 .. h_{ρ−1}] (2ρn entries), as
// SURM's ldr_g and ldr_h sit in its parameter block.

#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/structured/circulant.hpp>
#include <peft/structured/correlation.hpp>
#include <peft/structured/spectral.hpp>
#include <peft/structured/skew_circulant.hpp>

namespace peft::structured {

/// The dense Σ Circ(g_i)·Skew(h_i) for kernel [g; h] (2ρn entries), the oracle for tests.
template <class T>
Matrix<T> ldr_dense(const Eigen::Ref<const Vector<T>>& kernel, Index n, Index rank) {
  PEFT_REQUIRE(kernel.size() == 2 * rank * n, "ldr_dense: kernel must have 2·rank·n = ", 2 * rank * n,
               " entries, got ", kernel.size());
  Matrix<T> S = Matrix<T>::Zero(n, n);
  for (Index i = 0; i < rank; ++i)
    S += circulant_dense<T>(kernel.segment(i * n, n)) * skew_circulant_dense<T>(kernel.segment((rank + i) * n, n));
  return S;
}

template <class T, class Plan = fft::RealFFT<T>>
class LDR {
  using Spectra = fft::ComplexMatrix<T>;

 public:
  LDR(Index n, Index rank) : n_(checked(n, rank)), rank_(rank), plan_n_(n), plan_2n_(2 * n) {
    g_hat_.resize(rank, plan_n_.bins());
    h_hat_.resize(rank, plan_2n_.bins());
    u_hat_.resize(static_cast<std::size_t>(rank));
  }

  Index size() const { return n_; }
  Index rank() const { return rank_; }
  Index num_params() const { return 2 * rank_ * n_; }

  /// Sets [g; h] and computes their spectra once.
  void set_kernel(const T* kernel) {
    plan_n_.forward(kernel, n_, g_hat_.data(), g_hat_.cols(), rank_);
    kernel_pad_.setZero(rank_, 2 * n_);
    kernel_pad_.leftCols(n_) = ConstMatrixMap<T>(kernel + rank_ * n_, rank_, n_);
    plan_2n_.forward(kernel_pad_.data(), 2 * n_, h_hat_.data(), h_hat_.cols(), rank_);
  }

  /// Y = rows S·x of X (N x n).
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    PEFT_REQUIRE(X.cols() == n_, "LDR::forward: X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    pad_.setZero(X.rows(), 2 * n_);
    pad_.leftCols(n_) = X;
    fft::forward(plan_2n_, pad_, x_hat_);
    sum_.setZero(X.rows(), plan_n_.bins());
    for (Index i = 0; i < rank_; ++i) {
      detail::multiply_rows<false, false>(x_hat_, &h_hat_(i, 0), work_2n_);
      fft::inverse(plan_2n_, work_2n_, wide_, T(1) / static_cast<T>(2 * n_));
      u_ = wide_.leftCols(n_) - wide_.rightCols(n_);
      Spectra& u_hat = u_hat_[static_cast<std::size_t>(i)];
      fft::forward(plan_n_, u_, u_hat);
      detail::multiply_rows<false, true>(u_hat, &g_hat_(i, 0), sum_);
    }
    fft::inverse(plan_n_, sum_, Y, T(1) / static_cast<T>(n_));
  }

  /// dX = rows Sᵀ·g of G; dkernel (2ρn entries, may be null) += [dg; dh],
  /// with x from the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dkernel) {
    PEFT_REQUIRE(G.cols() == n_ && G.rows() == x_hat_.rows(), "LDR::backward: G must be ",
                 ::peft::detail::shape_str(x_hat_.rows(), n_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    fft::forward(plan_n_, G, g_in_hat_);
    dx_sum_.setZero(G.rows(), plan_2n_.bins());
    for (Index i = 0; i < rank_; ++i) {
      if (dkernel != nullptr)
        detail::add_correlation(plan_n_, u_hat_[static_cast<std::size_t>(i)], g_in_hat_, dkernel + i * n_, n_,
                                correlation_);
      detail::multiply_rows<true, false>(g_in_hat_, &g_hat_(i, 0), work_n_);
      fft::inverse(plan_n_, work_n_, u_, T(1) / static_cast<T>(n_));
      pad_.resize(G.rows(), 2 * n_);
      pad_.leftCols(n_) = u_;
      pad_.rightCols(n_) = -u_;
      fft::forward(plan_2n_, pad_, d_hat_);
      if (dkernel != nullptr)
        detail::add_correlation(plan_2n_, x_hat_, d_hat_, dkernel + (rank_ + i) * n_, n_, correlation_);
      detail::multiply_rows<true, true>(d_hat_, &h_hat_(i, 0), dx_sum_);
    }
    fft::inverse(plan_2n_, dx_sum_, wide_, T(1) / static_cast<T>(2 * n_));
    dX = wide_.leftCols(n_);
  }

 private:
  static Index checked(Index n, Index rank) {
    PEFT_REQUIRE(n >= 1, "LDR: size must be >= 1, got ", n);
    PEFT_REQUIRE(rank >= 1 && rank <= n, "LDR: displacement rank must be in [1, n] = [1, ", n, "], got ", rank);
    return n;
  }

  Index n_, rank_;
  Plan plan_n_, plan_2n_;
  Spectra g_hat_, h_hat_;            // kernel spectra, one row per term
  Spectra x_hat_;                    // forward input's 2n spectrum, kept for dh
  std::vector<Spectra> u_hat_;       // per term, Skew(h_i)·x's n spectrum, kept for dg
  Spectra sum_, g_in_hat_, d_hat_, dx_sum_, work_n_, work_2n_;
  detail::CorrelationScratch<T> correlation_;
  Matrix<T> kernel_pad_, pad_, wide_, u_;
};

}  // namespace peft::structured
