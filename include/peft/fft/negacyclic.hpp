#pragma once
// The negacyclic (skew-circulant) transform: the spectrum in which a
// skew-circulant product is pointwise, as the real FFT's is for a circulant.
//   F_k(x) = Σ_{j<n} x_j·e^{−iπ j(2k+1)/n},  k < n,
// the odd bins of the length-2n DFT of [x, 0]. For real x, F_{n−1−k} =
// conj F_k, so a plan keeps bins() independent ones. With these:
//   F(Skew(h)·x) = F(h) ⊙ F(x)
//   x = (1/n) Σ_{k<n} F_k·e^{+iπ j(2k+1)/n}   (inverse() with scale = 1/n)
//   Σ_j a_j b_j = (1/n) Σ_{k<n} conj F_k(a)·F_k(b)   (Parseval)
// so a plan has the real FFT plan's interface (size, bins, forward, inverse,
// inverse_of_product) and the circulant code runs on it unchanged.
//
// Which bins are kept depends on the plan: our engine, for even n, computes
// the right-angle fold of vectorized.hpp (one complex FFT of length n/2, the
// cost of a real FFT of length n; bins F_0, F_2, .., F_{n−2}); every other
// plan and odd n take the odd bins 1, 3, .. of a real FFT of length 2n of the
// zero-padded rows (bins F_0 .. F_{⌈n/2⌉−1}), about twice the work.

#include <algorithm>
#include <complex>

#include <peft/core/error.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>

namespace peft::fft {

/// The negacyclic (skew-circulant) transform F_k(x) = Σ_j x_j·e^{−iπ j(2k+1)/n}
/// with a real FFT plan's interface, on top of `Plan`.
template <class T, class Plan = RealFFT<T>>
class NegacyclicFFT {
 public:
  using Scalar = T;                 ///< real type, float or double
  using Complex = std::complex<T>;  ///< spectrum element

  /// Whether Plan computes the right-angle fold itself (our engine): then even n
  /// costs one length-n real FFT instead of a length-2n one.
  static constexpr bool has_right_angle =
      requires(Plan& p, const T* x, Complex* s, T* y) {
        p.negacyclic_forward(x, Index{}, s, Index{}, Index{});
        p.negacyclic_inverse_of_product(s, Index{}, s, bool{}, y, Index{}, Index{}, T{}, bool{});
      };

  /// A plan for length n; throws peft::Error unless n >= 1.
  explicit NegacyclicFFT(Index n) : n_(checked(n)), right_angle_(has_right_angle && n % 2 == 0), plan_(plan_length(n)) {}

  Index size() const { return n_; }            ///< n, the transform length
  Index bins() const { return (n_ + 1) / 2; }  ///< ⌈n/2⌉ independent bins kept (the rest are conjugates)
  /// The odd frequency 2κ + 1 whose F_κ is kept as bin k:
  /// bin k = Σ_j x_j·e^{−iπ j·frequency(k)/n}.
  Index frequency(Index k) const { return right_angle_ ? 4 * k + 1 : 2 * k + 1; }

  /// out[r][k] = the kept bins of F(in[r]), r < rows (unscaled).
  void forward(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    if constexpr (has_right_angle) {
      if (right_angle_) return plan_.negacyclic_forward(in, in_stride, out, out_stride, rows);
    }
    auto padded = padded_.view(rows, 2 * n_);
    padded.rightCols(n_).setZero();
    for (Index r = 0; r < rows; ++r) std::copy(in + r * in_stride, in + r * in_stride + n_, padded.row(r).data());
    auto wide = wide_.view(rows, plan_.bins());
    plan_.forward(padded.data(), 2 * n_, wide.data(), wide.cols(), rows);
    for (Index r = 0; r < rows; ++r)
      for (Index k = 0; k < bins(); ++k) out[r * out_stride + k] = wide(r, 2 * k + 1);
  }

  /// out[r] = scale · Σ_{k<n} F_k·e^{+iπ j(2k+1)/n} over the conjugate-completed
  /// bins in[r] (scale = 1/n: the inverse), or += with `accumulate`.
  void inverse(const Complex* in, Index in_stride, T* out, Index out_stride, Index rows, T scale,
               bool accumulate = false) {
    inverse_of_product(in, in_stride, nullptr, false, out, out_stride, rows, scale, accumulate);
  }

  /// inverse() of the bins times w (bins() entries, conjugated if conj_w; none if null).
  void inverse_of_product(const Complex* in, Index in_stride, const Complex* w, bool conj_w, T* out, Index out_stride,
                          Index rows, T scale, bool accumulate) {
    if constexpr (has_right_angle) {
      if (right_angle_)
        return plan_.negacyclic_inverse_of_product(in, in_stride, w, conj_w, out, out_stride, rows, scale, accumulate);
    }
    // Odd bins only: the 2n-point inverse of that spectrum is n·[x, −x]·scale.
    auto wide = wide_.view(rows, plan_.bins());
    wide.setZero();
    for (Index r = 0; r < rows; ++r)
      for (Index k = 0; k < bins(); ++k) {
        const Complex weight = w == nullptr ? Complex(1) : conj_w ? std::conj(w[k]) : w[k];
        wide(r, 2 * k + 1) = in[r * in_stride + k] * weight;
      }
    auto padded = padded_.view(rows, 2 * n_);
    plan_.inverse(wide.data(), wide.cols(), padded.data(), 2 * n_, rows, scale);
    for (Index r = 0; r < rows; ++r) {
      T* dst = out + r * out_stride;
      const T* src = padded.row(r).data();
      if (accumulate)
        for (Index j = 0; j < n_; ++j) dst[j] += src[j];
      else
        std::copy(src, src + n_, dst);
    }
  }

  // Our engine's panel interface (fft/vectorized.hpp) for the right-angle
  // fold; has_panels() says whether this plan computes it (even n).
  /// Rows per panel (0 when Plan has no panels).
  static constexpr int panel_rows = [] {
    if constexpr (has_right_angle) return Plan::panel_rows;
    else return 0;
  }();
  using Lane = detail::LaneComplex<T>;                            ///< one panel element, as VectorizedFFT::Lane
  bool has_panels() const { return right_angle_; }                ///< whether the panel functions may be used (even n)
  /// VectorizedFFT's panel functions for the negacyclic transform (see vectorized.hpp).
  ///@{
  Index panel_slots() const requires has_right_angle { return plan_.panel_slots(); }
  void load_panel(const T* in, Index in_stride, int lanes, Lane* z) requires has_right_angle {
    plan_.template load_panel<Transform::negacyclic>(in, in_stride, lanes, z);
  }
  template <class Visit>
  void around_spectrum(Lane* z, Visit&& visit) requires has_right_angle {
    plan_.template around_spectrum<Transform::negacyclic>(z, visit);
  }
  void store_panel(const Lane* z, T* out, Index out_stride, int lanes, T scale, bool accumulate)
    requires has_right_angle
  {
    plan_.template store_panel<Transform::negacyclic>(z, out, out_stride, lanes, scale, accumulate);
  }
  ///@}

 private:
  static Index checked(Index n) {
    PEFT_REQUIRE(n >= 1, "NegacyclicFFT: size must be >= 1, got ", n);
    return n;
  }
  Index plan_length(Index n) const { return right_angle_ ? n : 2 * n; }

  Index n_;
  bool right_angle_;
  Plan plan_;
  Scratch<T> padded_;      // rows x 2n, the zero-padded or unfolded rows
  Scratch<Complex> wide_;  // rows x (n + 1), the 2n-point half spectra
};

}  // namespace peft::fft
