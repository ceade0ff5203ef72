#pragma once
// Complex FFT of any length m on lane vectors: Stockham when m = 2^a·3^b·5^c,
// otherwise Bluestein's chirp-z algorithm, which rewrites the length-m DFT as a
// circular convolution of length M ≥ 2m − 1 (M a power of two):
//   X_k = c_k · Σ_j (x_j·c_j)·conj(c_{k−j}),   c_j = e^{−πi j²/m}
// computed as c ⊙ IFFT_M(FFT_M(x ⊙ c) ⊙ FFT_M(b)) / M with b the conjugate
// chirp wrapped around (b_j = b_{M−j} = conj(c_j)). FFT_M(b) is precomputed.
// The inverse transform is conj(forward(conj(x))).

#include <cmath>
#include <complex>
#include <numbers>
#include <vector>

#include <peft/core/types.hpp>
#include <peft/fft/lanes.hpp>
#include <peft/fft/stockham.hpp>

namespace peft::fft::detail {

template <class T>
class ComplexPlan {
 public:
  using C = LaneComplex<T>;
  using V = typename Lanes<T>::type;

  ComplexPlan() = default;
  explicit ComplexPlan(Index m) : m_(m) {
    if (m == 1 || !stockham_radices(m).empty()) {
      direct_ = Stockham<T>(m);
      return;
    }
    bluestein_ = true;
    M_ = 1;
    while (M_ < 2 * m - 1) M_ *= 2;
    direct_ = Stockham<T>(M_);
    using Wide = std::conditional_t<std::is_same_v<T, float>, double, long double>;
    chirp_.resize(static_cast<std::size_t>(m));
    for (Index j = 0; j < m; ++j) {
      // j² mod 2m keeps the angle small, and so accurate, for large j.
      const Wide angle = -std::numbers::pi_v<Wide> * static_cast<Wide>((j * j) % (2 * m)) / static_cast<Wide>(m);
      chirp_[static_cast<std::size_t>(j)] = std::complex<T>(static_cast<T>(std::cos(angle)), static_cast<T>(std::sin(angle)));
    }
    // FFT_M of the wrapped conjugate chirp, in every lane, scaled by 1/M.
    std::vector<C> b(static_cast<std::size_t>(M_)), work(static_cast<std::size_t>(direct_.work_size()));
    for (auto& e : b) e.re = e.im = V{};
    for (Index j = 0; j < m; ++j) {
      const std::complex<T> v = std::conj(chirp_[static_cast<std::size_t>(j)]);
      set(b[static_cast<std::size_t>(j)], v);
      if (j > 0) set(b[static_cast<std::size_t>(M_ - j)], v);
    }
    direct_.template transform<false>(b.data(), work.data());
    kernel_.resize(static_cast<std::size_t>(M_));
    const T inv_M = T(1) / static_cast<T>(M_);
    for (Index k = 0; k < M_; ++k)
      kernel_[static_cast<std::size_t>(k)] =
          std::complex<T>(b[static_cast<std::size_t>(k)].re[0] * inv_M, b[static_cast<std::size_t>(k)].im[0] * inv_M);
  }

  Index size() const { return m_; }
  /// Elements of scratch transform() needs.
  Index scratch_size() const {
    return bluestein_ ? direct_.padded_layout().extent(M_) + direct_.work_size() : direct_.work_size();
  }
  /// The padded layout transform() can take and give signals in (natural
  /// where padding does not pay, and for Bluestein).
  PanelLayout signal_layout() const { return bluestein_ ? PanelLayout{} : direct_.padded_layout(); }

  /// Transforms x (m elements) in place, reading it in layout `in` and
  /// writing it in layout `out` (each natural or signal_layout()).
  template <bool Inverse>
  void transform(C* x, C* scratch, PanelLayout in = {}, PanelLayout out = {}) const {
    if (!bluestein_) {
      direct_.template transform<Inverse>(x, scratch, in, out);
      return;
    }
    // conj(forward(conj(x))) for the inverse: conjugate on the way in and out.
    // The length-M buffer stays inside: it is kept in the padded layout.
    const PanelLayout pad = direct_.padded_layout();
    C* a = scratch;
    C* work = scratch + pad.extent(M_);
    for (Index j = 0; j < m_; ++j) {
      V im = x[j].im;
      if constexpr (Inverse) im = -im;
      const std::complex<T> c = chirp_[static_cast<std::size_t>(j)];
      C& aj = a[pad.slot(j)];
      aj.re = x[j].re * c.real() - im * c.imag();
      aj.im = x[j].re * c.imag() + im * c.real();
    }
    for (Index j = m_; j < M_; ++j) a[pad.slot(j)].re = a[pad.slot(j)].im = V{};
    direct_.template transform<false>(a, work, pad, pad);
    for (Index k = 0; k < M_; ++k) {
      const std::complex<T> b = kernel_[static_cast<std::size_t>(k)];
      C& ak = a[pad.slot(k)];
      const V re = ak.re * b.real() - ak.im * b.imag();
      ak.im = ak.re * b.imag() + ak.im * b.real();
      ak.re = re;
    }
    direct_.template transform<true>(a, work, pad, pad);
    for (Index k = 0; k < m_; ++k) {
      const std::complex<T> c = chirp_[static_cast<std::size_t>(k)];
      const C& ak = a[pad.slot(k)];
      x[k].re = ak.re * c.real() - ak.im * c.imag();
      x[k].im = ak.re * c.imag() + ak.im * c.real();
      if constexpr (Inverse) x[k].im = -x[k].im;
    }
  }

 private:
  static void set(C& e, std::complex<T> v) {
    for (int l = 0; l < Lanes<T>::count; ++l) {
      e.re[l] = v.real();
      e.im[l] = v.imag();
    }
  }

  Index m_ = 1, M_ = 1;
  bool bluestein_ = false;
  Stockham<T> direct_;
  std::vector<std::complex<T>> chirp_;   // c_j, j < m
  std::vector<std::complex<T>> kernel_;  // FFT_M(b) / M
};

}  // namespace peft::fft::detail
