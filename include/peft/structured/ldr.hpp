#pragma once
// Low-displacement-rank products, S = Σ_{i<ρ} Circ(g_i)·Skew(h_i) (n x n),
// with the spectra shared across the ρ terms. F is the real FFT, N the
// negacyclic transform (fft/negacyclic.hpp; Skew(h)·x = N⁻¹(ĥ ⊙ N(x))):
//   forward   x̃ = N(x) once;  per term u_i = N⁻¹(h̃_i ⊙ x̃),  û_i = F(u_i);
//             y = F⁻¹(Σ_i ĝ_i ⊙ û_i)  (one inverse for all terms)
//   backward  Ĝ = F(g) once;  dg_i = F⁻¹(Σ_rows conj(û_i) ⊙ Ĝ);
//             du_i = F⁻¹(conj(ĝ_i) ⊙ Ĝ),  D̃_i = N(du_i);
//             dh_i = N⁻¹(Σ_rows conj(x̃) ⊙ D̃_i);  dx = N⁻¹(Σ_i conj(h̃_i) ⊙ D̃_i)
// 2 + 2ρ transforms each way instead of 4ρ, each of length n.
// The kernel is one array [g_0 .. g_{ρ−1}, h_0 .. h_{ρ−1}] (2ρn entries), as
// SURM's ldr_g and ldr_h sit in its parameter block.

#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/fft/negacyclic.hpp>
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
  LDR(Index n, Index rank) : n_(checked(n, rank)), rank_(rank), plan_n_(n), skew_plan_(n) {
    g_hat_.resize(rank, plan_n_.bins());
    h_hat_.resize(rank, skew_plan_.bins());
    u_hat_.resize(static_cast<std::size_t>(rank));
  }

  Index size() const { return n_; }
  Index rank() const { return rank_; }
  Index num_params() const { return 2 * rank_ * n_; }

  /// Sets [g; h] and computes their spectra once.
  void set_kernel(const T* kernel) {
    plan_n_.forward(kernel, n_, g_hat_.data(), g_hat_.cols(), rank_);
    skew_plan_.forward(kernel + rank_ * n_, n_, h_hat_.data(), h_hat_.cols(), rank_);
  }

  /// Y = scale · rows S·x of X (N x n), or Y (N x n) += that with `accumulate`.
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    PEFT_REQUIRE(X.cols() == n_, "LDR::forward: X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    fft::forward(skew_plan_, X, x_hat_);
    sum_.setZero(X.rows(), plan_n_.bins());
    for (Index i = 0; i < rank_; ++i) {
      detail::inverse_of_product<false>(skew_plan_, x_hat_, &h_hat_(i, 0), work_skew_, u_, inverse_scale(), false,
                                        "LDR::forward");
      Spectra& u_hat = u_hat_[static_cast<std::size_t>(i)];
      fft::forward(plan_n_, u_, u_hat);
      detail::multiply_rows<false, true>(u_hat, &g_hat_(i, 0), sum_);
    }
    detail::inverse_rows(plan_n_, sum_, Y, scale * inverse_scale(), accumulate, "LDR::forward");
  }

  /// dX = scale · rows Sᵀ·g of G (or += with `accumulate`); dkernel (2ρn
  /// entries, may be null) += scale · [dg; dh], with x from the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dkernel, T scale = T(1), bool accumulate = false) {
    PEFT_REQUIRE(G.cols() == n_ && G.rows() == x_hat_.rows(), "LDR::backward: G must be ",
                 ::peft::detail::shape_str(x_hat_.rows(), n_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    fft::forward(plan_n_, G, g_in_hat_);
    dx_sum_.setZero(G.rows(), skew_plan_.bins());
    for (Index i = 0; i < rank_; ++i) {
      if (dkernel != nullptr)
        detail::add_correlation(plan_n_, u_hat_[static_cast<std::size_t>(i)], g_in_hat_, dkernel + i * n_, n_,
                                correlation_, scale);
      detail::inverse_of_product<true>(plan_n_, g_in_hat_, &g_hat_(i, 0), work_n_, u_, inverse_scale(), false,
                                       "LDR::backward");
      fft::forward(skew_plan_, u_, d_hat_);
      if (dkernel != nullptr)
        detail::add_correlation(skew_plan_, x_hat_, d_hat_, dkernel + (rank_ + i) * n_, n_, correlation_,
                                scale);
      detail::multiply_rows<true, true>(d_hat_, &h_hat_(i, 0), dx_sum_);
    }
    detail::inverse_rows(skew_plan_, dx_sum_, dX, scale * inverse_scale(), accumulate, "LDR::backward");
  }

 private:
  static Index checked(Index n, Index rank) {
    PEFT_REQUIRE(n >= 1, "LDR: size must be >= 1, got ", n);
    PEFT_REQUIRE(rank >= 1 && rank <= n, "LDR: displacement rank must be in [1, n] = [1, ", n, "], got ", rank);
    return n;
  }

  T inverse_scale() const { return T(1) / static_cast<T>(n_); }

  Index n_, rank_;
  Plan plan_n_;
  fft::NegacyclicFFT<T, Plan> skew_plan_;
  Spectra g_hat_, h_hat_;            // kernel spectra, one row per term (real FFT, negacyclic)
  Spectra x_hat_;                    // forward input's negacyclic spectrum, kept for dh
  std::vector<Spectra> u_hat_;       // per term, Skew(h_i)·x's spectrum, kept for dg
  Spectra sum_, g_in_hat_, d_hat_, dx_sum_, work_n_, work_skew_;
  detail::CorrelationScratch<T> correlation_;
  Matrix<T> u_;
};

}  // namespace peft::structured
