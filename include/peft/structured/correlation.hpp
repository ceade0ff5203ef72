#pragma once
// The kernel gradient every FFT-structured product shares: a cross-correlation
// of the forward input with the upstream gradient, summed over the batch in
// the frequency domain before one inverse FFT (irfft is linear, and each
// conj(x̂)⊙ĝ of real signals is a Hermitian half spectrum).

#include <complex>

#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/structured/spectral.hpp>

namespace peft::structured::detail {

/// Scratch for add_correlation, kept by the operator between calls.
template <class T>
struct CorrelationScratch {
  Eigen::Matrix<std::complex<T>, 1, Eigen::Dynamic> sum;
  Eigen::Matrix<T, 1, Eigen::Dynamic> row;

  /// sum's storage for `bins` bins. It only grows: products that alternate
  /// real and skew bin counts would otherwise reallocate on every resize.
  std::complex<T>* sum_for(Index bins) {
    if (sum.size() < bins) sum.resize(bins);
    return sum.data();
  }
};

/// out[0 : count] += scale · irfft(scratch.sum)[0 : count] / plan.size(), for a
/// batch sum already in scratch.sum (plan.bins() entries).
template <class Plan, class T = typename Plan::Scalar>
void add_inverse_of_sum(Plan& plan, T* out, Index count, CorrelationScratch<T>& scratch, T scale) {
  scratch.row.resize(plan.size());
  plan.inverse(scratch.sum.data(), plan.bins(), scratch.row.data(), plan.size(), 1, scale / static_cast<T>(plan.size()));
  Eigen::Map<Vector<T>>(out, count) += scratch.row.head(count).transpose();
}

/// out[0 : count] += scale · irfft(Σ_rows conj(x̂) ⊙ ĝ)[0 : count] / plan.size().
template <class Plan, class T = typename Plan::Scalar>
void add_correlation(Plan& plan, const fft::ComplexMatrix<T>& x_hat, const fft::ComplexMatrix<T>& g_hat, T* out,
                     Index count, CorrelationScratch<T>& scratch, T scale = T(1)) {
  sum_conj_products(x_hat, g_hat, scratch.sum_for(x_hat.cols()));
  add_inverse_of_sum(plan, out, count, scratch, scale);
}

}  // namespace peft::structured::detail
