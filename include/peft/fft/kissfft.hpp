#pragma once
// Reference backend: Eigen's bundled kissfft (unsupported/Eigen/FFT), one row
// at a time. Always available; slow (no batching, no SIMD across rows).
// Eigen's FFT object caches its plans inside itself, never in statics.

#include <complex>
#include <vector>

#include <peft/core/intrinsics.hpp>  // before Eigen: see there (GCC 12)

#include <unsupported/Eigen/FFT>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace peft::fft {

/// The reference real-FFT plan (Eigen's kissfft, one row at a time); the
/// interface of every backend is described in fft.hpp.
template <class T>
class KissFFT {
 public:
  using Scalar = T;                               ///< real type, float or double
  using Complex = std::complex<T>;                ///< spectrum element
  static constexpr const char* name = "kissfft";  ///< the backend's name, for benchmarks and messages

  /// A plan for length n; throws peft::Error unless n >= 1.
  explicit KissFFT(Index n) : n_(n) {
    PEFT_REQUIRE(n >= 1, "KissFFT: length must be >= 1, got ", n);
    fft_.SetFlag(Eigen::FFT<T>::HalfSpectrum);
    fft_.SetFlag(Eigen::FFT<T>::Unscaled);
  }

  Index size() const { return n_; }          ///< n, the transform length
  Index bins() const { return n_ / 2 + 1; }  ///< n/2 + 1, the half spectrum's length

  /// out[r] = the unscaled half spectrum of in[r], for `rows` rows (strides in elements).
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
