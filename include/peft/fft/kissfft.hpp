#pragma once
// Reference backend: Eigen's bundled kissfft (unsupported/Eigen/FFT), one row
// at a time. Always available; slow (no batching, no SIMD across rows).
// Eigen's FFT object caches its plans inside itself, never in statics.

#include <complex>
#include <vector>

#include <unsupported/Eigen/FFT>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace peft::fft {

template <class T>
class KissFFT {
 public:
  using Scalar = T;
  using Complex = std::complex<T>;
  static constexpr const char* name = "kissfft";

  explicit KissFFT(Index n) : n_(n) {
    PEFT_REQUIRE(n >= 1, "KissFFT: length must be >= 1, got ", n);
    fft_.SetFlag(Eigen::FFT<T>::HalfSpectrum);
    fft_.SetFlag(Eigen::FFT<T>::Unscaled);
  }

  Index size() const { return n_; }
  Index bins() const { return n_ / 2 + 1; }

  void forward(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    for (Index r = 0; r < rows; ++r) {
      if (n_ == 1) out[r * out_stride] = in[r * in_stride];  // kissfft cannot plan length 1
      else fft_.fwd(out + r * out_stride, in + r * in_stride, n_);
    }
  }

  /// With `accumulate`, out += the scaled inverse (through a scratch row).
  void inverse(const Complex* in, Index in_stride, T* out, Index out_stride, Index rows, T scale,
               bool accumulate = false) {
    if (accumulate) row_.resize(static_cast<std::size_t>(n_));
    for (Index r = 0; r < rows; ++r) {
      T* dst = out + r * out_stride;
      T* row = accumulate ? row_.data() : dst;
      // Always pass n: with a half spectrum Eigen would otherwise infer an even length.
      if (n_ == 1) row[0] = in[r * in_stride].real();
      else fft_.inv(row, in + r * in_stride, n_);
      for (Index j = 0; j < n_; ++j) dst[j] = (accumulate ? dst[j] : T(0)) + scale * row[j];
    }
  }

 private:
  Index n_;
  Eigen::FFT<T> fft_;
  std::vector<T> row_;  // accumulate's scratch
};

}  // namespace peft::fft
