#pragma once
// Real FFTs of blocks of rows, the one interface every structured adapter
// uses. A plan for length n transforms `rows` rows at once:
//   forward(in, in_stride, out, out_stride, rows)
//     out[r][k] = Σ_j in[r][j]·e^{−2πi jk/n},  k < bins() = n/2 + 1  (unscaled)
//   inverse(in, in_stride, out, out_stride, rows, scale, accumulate = false)
//     out[r][j] = scale·Σ_k X_k·e^{+2πi jk/n} over the Hermitian spectrum
//     (scale = 1/n is the true inverse); `accumulate` adds into out instead
// Strides count elements between row starts (row-major blocks).
//
// Backends, chosen at compile time like Eigen's FFT backend:
//   VectorizedFFT  peft-cpp's own engine (default)
//   KissFFT        Eigen's kissfft, the reference (define PEFT_FFT_KISSFFT)
//   FFTWPlan       FFTW, GPL, opt-in (PEFT_WITH_FFTW + define PEFT_FFT_FFTW)
// fft::RealFFT<T> names the chosen one. Plans hold scratch: one per thread.

#include <complex>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/kissfft.hpp>
#include <peft/fft/vectorized.hpp>
#ifdef PEFT_WITH_FFTW
#include <peft/fft/fftw.hpp>
#endif

namespace peft::fft {

/// The backend picked at compile time: VectorizedFFT by default, KissFFT with
/// PEFT_FFT_KISSFFT, FFTWPlan with PEFT_FFT_FFTW (and PEFT_WITH_FFTW).
#if defined(PEFT_FFT_FFTW)
#ifndef PEFT_WITH_FFTW
#error "PEFT_FFT_FFTW needs PEFT_WITH_FFTW"
#endif
template <class T>
using RealFFT = FFTWPlan<T>;
#elif defined(PEFT_FFT_KISSFFT)
template <class T>
using RealFFT = KissFFT<T>;
#else
template <class T>
using RealFFT = VectorizedFFT<T>;
#endif

/// A block of half spectra, one row per input row.
template <class T>
using ComplexMatrix = Eigen::Matrix<std::complex<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// S = forward transform of every row of X (S resized to rows x bins).
template <class Plan>
void forward(Plan& plan, const ConstMatrixRef<typename Plan::Scalar>& X, ComplexMatrix<typename Plan::Scalar>& S) {
  PEFT_REQUIRE(X.cols() == plan.size(), "fft::forward: rows must have the plan's length ", plan.size(), ", got ",
               ::peft::detail::shape_str(X.rows(), X.cols()));
  S.resize(X.rows(), plan.bins());
  plan.forward(X.data(), X.outerStride(), S.data(), S.cols(), X.rows());
}

/// X = scale · inverse transform of every row of S (X resized to rows x n).
template <class Plan>
void inverse(Plan& plan, const ComplexMatrix<typename Plan::Scalar>& S, Matrix<typename Plan::Scalar>& X,
             typename Plan::Scalar scale) {
  PEFT_REQUIRE(S.cols() == plan.bins(), "fft::inverse: spectra must have the plan's ", plan.bins(), " bins, got ",
               ::peft::detail::shape_str(S.rows(), S.cols()));
  X.resize(S.rows(), plan.size());
  plan.inverse(S.data(), S.cols(), X.data(), X.cols(), S.rows(), scale);
}

/// out (bins x rows, bin-major) = the spectra of `rows` rows of length n at
/// in (row stride n). Our engine writes them so directly; other plans go
/// through row-major spectra in `scratch` and a transpose.
template <class Plan>
void forward_bin_major(Plan& plan, const typename Plan::Scalar* in, Index rows, ComplexMatrix<typename Plan::Scalar>& out,
                       ComplexMatrix<typename Plan::Scalar>& scratch) {
  out.resize(plan.bins(), rows);
  if constexpr (requires { plan.forward_bin_major(in, rows, out.data(), rows, rows); }) {
    plan.forward_bin_major(in, plan.size(), out.data(), rows, rows);
  } else {
    scratch.resize(rows, plan.bins());
    plan.forward(in, plan.size(), scratch.data(), plan.bins(), rows);
    out = scratch.transpose();
  }
}

/// out (rows of length n, row stride n) = or += scale · the inverse of the
/// bin-major spectra in (bins x rows). Other plans than ours transpose into `scratch` first.
template <class Plan>
void inverse_bin_major(Plan& plan, const ComplexMatrix<typename Plan::Scalar>& in, typename Plan::Scalar* out,
                       typename Plan::Scalar scale, bool accumulate, ComplexMatrix<typename Plan::Scalar>& scratch) {
  const Index rows = in.cols();
  PEFT_ASSERT(in.rows() == plan.bins());
  if constexpr (requires { plan.inverse_bin_major(in.data(), rows, out, rows, rows, scale, accumulate); }) {
    plan.inverse_bin_major(in.data(), rows, out, plan.size(), rows, scale, accumulate);
  } else {
    scratch = in.transpose();
    plan.inverse(scratch.data(), plan.bins(), out, plan.size(), rows, scale, accumulate);
  }
}

}  // namespace peft::fft
