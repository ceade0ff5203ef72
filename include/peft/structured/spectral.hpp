#pragma once
// Pointwise products of half spectra, the step between the FFTs of every
// structured product: out[r] = a[r] ⊙ w (or conj w), for each row r.
// Written on interleaved real/imaginary parts rather than with std::complex's
// operator*, which (without -ffast-math) calls libgcc's __mulsc3 per element
// for C99 NaN/Inf recovery and blocks vectorisation: at n = 4096 that call
// alone took ~18% of an LDR step. Inputs here are finite spectra.

#include <algorithm>
#include <complex>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>

namespace peft::structured::detail {

/// out (rows x bins) = or += rows of a times w (bins entries), w conjugated if ConjW.
template <bool ConjW, bool Accumulate, class T>
void multiply_rows(const fft::ComplexMatrix<T>& a, const std::complex<T>* w, fft::ComplexMatrix<T>& out) {
  const Index rows = a.rows(), bins = a.cols();
  if constexpr (Accumulate) {
    PEFT_ASSERT(out.rows() == rows && out.cols() == bins);
  } else {
    out.resize(rows, bins);
  }
  const T* __restrict wp = reinterpret_cast<const T*>(w);
  for (Index r = 0; r < rows; ++r) {
    const T* __restrict ap = reinterpret_cast<const T*>(a.data() + r * bins);
    T* __restrict op = reinterpret_cast<T*>(out.data() + r * bins);
    for (Index k = 0; k < bins; ++k) {
      const T ar = ap[2 * k], ai = ap[2 * k + 1], wr = wp[2 * k], wi = ConjW ? -wp[2 * k + 1] : wp[2 * k + 1];
      const T re = ar * wr - ai * wi, im = ar * wi + ai * wr;
      if constexpr (Accumulate) {
        op[2 * k] += re;
        op[2 * k + 1] += im;
      } else {
        op[2 * k] = re;
        op[2 * k + 1] = im;
      }
    }
  }
}

/// Checks that an output to accumulate into is rows x cols.
template <class T>
void require_accumulable(const Matrix<T>& out, Index rows, Index cols, const char* who) {
  PEFT_REQUIRE(out.rows() == rows && out.cols() == cols, who, ": the output to accumulate into must be ",
               ::peft::detail::shape_str(rows, cols), ", got ", ::peft::detail::shape_str(out.rows(), out.cols()));
}

/// Sizes an output rows x cols, or, to be accumulated into, checks it is already.
template <class T>
void prepare_output(Matrix<T>& out, Index rows, Index cols, bool accumulate, const char* who) {
  if (accumulate)
    require_accumulable(out, rows, cols, who);
  else
    out.resize(rows, cols);
}

/// Sizes out for the inverse transform of a's rows (see prepare_output).
template <class Plan, class T = typename Plan::Scalar>
void prepare_inverse_output(const Plan& plan, const fft::ComplexMatrix<T>& a, Matrix<T>& out, bool accumulate,
                            const char* who) {
  prepare_output(out, a.rows(), plan.size(), accumulate, who);
}

/// out = scale · inverse FFT of the rows of a, or out (rows x n) += that with `accumulate`.
template <class Plan, class T = typename Plan::Scalar>
void inverse_rows(Plan& plan, const fft::ComplexMatrix<T>& a, Matrix<T>& out, T scale, bool accumulate,
                  const char* who) {
  PEFT_ASSERT(a.cols() == plan.bins());
  prepare_inverse_output(plan, a, out, accumulate, who);
  plan.inverse(a.data(), a.cols(), out.data(), out.cols(), a.rows(), scale, accumulate);
}

/// out = scale · inverse FFT of the rows of a times w (conjugated if ConjW),
/// or out (rows x n) += that with `accumulate`. Our engine takes the product
/// inside its inverse (no stored product); other plans go through `work`.
template <bool ConjW, class Plan, class T = typename Plan::Scalar>
void inverse_of_product(Plan& plan, const fft::ComplexMatrix<T>& a, const std::complex<T>* w,
                        fft::ComplexMatrix<T>& work, Matrix<T>& out, T scale, bool accumulate, const char* who) {
  prepare_inverse_output(plan, a, out, accumulate, who);
  if constexpr (requires { plan.inverse_of_product(a.data(), a.cols(), w, ConjW, out.data(), out.cols(), a.rows(),
                                                    scale, accumulate); }) {
    plan.inverse_of_product(a.data(), a.cols(), w, ConjW, out.data(), out.cols(), a.rows(), scale, accumulate);
  } else {
    multiply_rows<ConjW, false>(a, w, work);
    plan.inverse(work.data(), work.cols(), out.data(), out.cols(), work.rows(), scale, accumulate);
  }
}

/// sum[k] = Σ_r conj(x[r][k])·g[r][k], k < bins = x.cols() (sum has room for them).
template <class T>
void sum_conj_products(const fft::ComplexMatrix<T>& x, const fft::ComplexMatrix<T>& g, std::complex<T>* sum) {
  PEFT_ASSERT(x.rows() == g.rows() && x.cols() == g.cols());
  const Index rows = x.rows(), bins = x.cols();
  std::fill(sum, sum + bins, std::complex<T>(0));
  T* __restrict sp = reinterpret_cast<T*>(sum);
  for (Index r = 0; r < rows; ++r) {
    const T* __restrict xp = reinterpret_cast<const T*>(x.data() + r * bins);
    const T* __restrict gp = reinterpret_cast<const T*>(g.data() + r * bins);
    for (Index k = 0; k < bins; ++k) {
      const T xr = xp[2 * k], xi = xp[2 * k + 1], gr = gp[2 * k], gi = gp[2 * k + 1];
      sp[2 * k] += xr * gr + xi * gi;
      sp[2 * k + 1] += xr * gi - xi * gr;
    }
  }
}

}  // namespace peft::structured::detail
