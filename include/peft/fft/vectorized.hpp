#pragma once
// peft-cpp's own real FFT, the default backend: rows are processed in panels
// of L (the lane count), each panel gathered into lane-interleaved buffers so
// that every butterfly transforms L rows with one vector operation, then
// scattered back. A ragged last panel uses only its first lanes and never
// reads or writes past the last row.
//
// Even n = 2m: one complex FFT of length m on z_j = x_{2j} + i·x_{2j+1}, then
//   E_k = (Z_k + conj Z_{m−k})/2,  O_k = −i(Z_k − conj Z_{m−k})/2,
//   X_k = E_k + W^k·O_k,  W = e^{−2πi/n},  k = 0..m  (indices of Z mod m).
// The inverse runs the same steps backwards:
//   Z_k = (X_k + conj X_{m−k}) + i·W^{−k}(X_k − conj X_{m−k}),  z = IFFT_m(Z),
//   x_{2j} = Re z_j, x_{2j+1} = Im z_j.
// Odd n: a complex FFT of length n on (x_j, 0); the inverse completes the
// Hermitian spectrum and keeps the real part.
// Even n also gets the negacyclic (skew) transform of negacyclic.hpp through
// the same length-m complex FFT, the "right-angle" fold:
//   R_k = Σ_j θ^j·(x_j − i·x_{j+m})·e^{−2πi jk/m},  θ = e^{−iπ/n},  k < m,
// which is Σ_{j<n} x_j·e^{−iπ j(4k+1)/n}: every other odd bin of the length-2n
// DFT of [x, 0], and, with the conjugates of the others, all of them. Its
// inverse: s = θ^{−j}·IFFT_m(R), x_j = 2·Re s_j, x_{j+m} = −2·Im s_j (times scale).
// Plans own their twiddles and scratch: no allocation per call. A plan is not
// safe to use from two threads at once; give each thread its own.

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <numbers>
#include <type_traits>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/complex_plan.hpp>
#include <peft/fft/lanes.hpp>

namespace peft::fft {

/// The default panel visitor: does nothing.
struct NoVisit {
  /// Leaves bin k as it is.
  template <class Lane>
  void operator()(Index, Lane&) const {}
};

/// Which transform a panel operation computes: the real FFT, or (even n
/// only) the negacyclic transform of negacyclic.hpp.
enum class Transform { real, negacyclic };

/// peft-cpp's own real-FFT plan, the default backend: rows in panels of
/// panel_rows, one SIMD butterfly for the whole panel. One plan per thread.
template <class T>
class VectorizedFFT {
 public:
  using Scalar = T;                 ///< real type, float or double
  using Complex = std::complex<T>;  ///< spectrum element
  /// One element of a panel: the same element of L rows, real and imaginary lanes.
  using Lane = detail::LaneComplex<T>;
  static constexpr const char* name = "peft";  ///< the backend's name, for benchmarks and messages
  /// Rows per panel.
  static constexpr int panel_rows = detail::Lanes<T>::count;

  /// A plan for length n (twiddles and scratch allocated here); throws peft::Error unless n >= 1.
  explicit VectorizedFFT(Index n) : n_(n) {
    PEFT_REQUIRE(n >= 1, "VectorizedFFT: length must be >= 1, got ", n);
    even_ = n % 2 == 0;
    const Index m = even_ ? n / 2 : n;
    plan_ = detail::ComplexPlan<T>(m);
    layout_ = plan_.signal_layout();
    z_.resize(static_cast<std::size_t>(panel_slots()));
    scratch_.resize(static_cast<std::size_t>(std::max<Index>(plan_.scratch_size(), 1)));
    if (even_) {
      using Wide = std::conditional_t<std::is_same_v<T, float>, double, long double>;
      twiddle_.resize(static_cast<std::size_t>(m + 1));
      for (Index k = 0; k <= m; ++k) {
        const Wide angle = -2 * std::numbers::pi_v<Wide> * static_cast<Wide>(k) / static_cast<Wide>(n);
        twiddle_[static_cast<std::size_t>(k)] = Complex(static_cast<T>(std::cos(angle)), static_cast<T>(std::sin(angle)));
      }
      twist_.resize(static_cast<std::size_t>(m));
      for (Index j = 0; j < m; ++j) {
        const Wide angle = -std::numbers::pi_v<Wide> * static_cast<Wide>(j) / static_cast<Wide>(n);
        twist_[static_cast<std::size_t>(j)] = Complex(static_cast<T>(std::cos(angle)), static_cast<T>(std::sin(angle)));
      }
    }
  }

  Index size() const { return n_; }          ///< n, the transform length
  Index bins() const { return n_ / 2 + 1; }  ///< n/2 + 1, the half spectrum's length

  /// out[r][k] = Σ_j in[r][j]·e^{−2πi jk/n} for k < bins(), r < rows (unscaled).
  void forward(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    transform_rows<Transform::real>(in, in_stride, out, out_stride, rows);
  }

  /// out[r][j] = scale·Σ_k X_k·e^{+2πi jk/n} over the Hermitian spectrum whose
  /// first bins() entries are in[r] (imaginary parts of DC and, for even n,
  /// Nyquist are ignored). scale = 1/n gives the true inverse. With
  /// `accumulate`, out[r][j] += that instead (added while scattering the
  /// panel back, so no second pass over the rows).
  void inverse(const Complex* in, Index in_stride, T* out, Index out_stride, Index rows, T scale,
               bool accumulate = false) {
    inverse_of_product(in, in_stride, nullptr, false, out, out_stride, rows, scale, accumulate);
  }

  /// inverse() of the rows of `in` times w (bins() entries, conjugated if
  /// conj_w; none if w is null). The product is taken in the lane buffer
  /// after the gather: the spectra are read once and no product is stored.
  void inverse_of_product(const Complex* in, Index in_stride, const Complex* w, bool conj_w, T* out, Index out_stride,
                          Index rows, T scale, bool accumulate) {
    inverse_rows<Transform::real>(in, in_stride, w, conj_w, out, out_stride, rows, scale, accumulate);
  }

  /// The negacyclic spectrum R (n/2 bins, above) of each row; even n only.
  void negacyclic_forward(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    require_even("negacyclic_forward");
    transform_rows<Transform::negacyclic>(in, in_stride, out, out_stride, rows);
  }

  /// scale · the inverse negacyclic transform of the rows of `in` (n/2 bins)
  /// times w (conjugated if conj_w; none if null), or += with `accumulate`.
  /// scale = 1/n gives the true inverse. Even n only.
  void negacyclic_inverse_of_product(const Complex* in, Index in_stride, const Complex* w, bool conj_w, T* out,
                                     Index out_stride, Index rows, T scale, bool accumulate) {
    require_even("negacyclic_inverse_of_product");
    inverse_rows<Transform::negacyclic>(in, in_stride, w, conj_w, out, out_stride, rows, scale, accumulate);
  }

  /// forward() with the spectra stored bin-major: out[k·out_stride + r] = X_k
  /// of row r (k < bins(), r < rows), as per-frequency GEMMs want them (C3A).
  /// Each panel's bins are written straight from the lanes, so no row-major
  /// spectrum is formed or transposed.
  void forward_bin_major(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    C* z = z_.data();
    detail::for_each_panel(rows, L, [&](Index r0, int lanes, Index) {
      load_panel(in + r0 * in_stride, in_stride, lanes, z);
      forward_panel(z);
      for (Index k = 0; k < bins(); ++k) {
        Complex* dst = out + k * out_stride + r0;
        for (int l = 0; l < lanes; ++l) dst[l] = Complex(z[k].re[l], z[k].im[l]);
      }
    });
  }

  /// inverse() of spectra stored bin-major (in[k·in_stride + r], r < rows).
  void inverse_bin_major(const Complex* in, Index in_stride, T* out, Index out_stride, Index rows, T scale,
                         bool accumulate = false) {
    C* z = z_.data();
    detail::for_each_panel(rows, L, [&](Index r0, int lanes, Index) {
      for (Index k = 0; k < bins(); ++k) {
        const Complex* src = in + k * in_stride + r0;
        for (int l = 0; l < L; ++l) {
          const Complex v = l < lanes ? src[l] : Complex(0);
          z[k].re[l] = v.real();
          z[k].im[l] = v.imag();
        }
      }
      inverse_panel(z);
      store_panel(z, out + r0 * out_stride, out_stride, lanes, scale, accumulate);
    });
  }

  // The panel interface: the steps the row functions above are made of, for
  // callers that chain transforms and pointwise products on a panel without
  // taking it back to rows in between (the structured products). A panel
  // buffer holds panel_slots() Lanes; `lanes` ≤ panel_rows rows are used.
  //   load_panel      rows → the transform's input layout (unused lanes zeroed)
  //   forward_panel   in place: input layout → spectrum, bins 0..(bins − 1)
  //   inverse_panel   in place: spectrum → n·signal in the input layout
  //   store_panel     out rows = (or +=) scale · that signal
  // Spectra have bins() (real) or n/2 (negacyclic) bins, as the row functions',
  // and bin k is element k of the buffer. Signals sit in the engine's own
  // layout (padded for long power-of-two lengths, see PanelLayout): callers
  // only move them with the functions here, and any buffer that holds one
  // needs panel_slots() Lanes. The negacyclic steps need even n.

  /// Every length runs on panels (the negacyclic steps: even lengths).
  bool has_panels() const { return true; }
  /// Lanes a panel buffer needs.
  Index panel_slots() const { return even_ ? std::max(n_ / 2 + 1, layout_.extent(n_ / 2)) : n_; }

  /// `lanes` rows of `in` into the panel buffer z in K's input layout (unused lanes zeroed).
  template <Transform K = Transform::real>
  void load_panel(const T* in, Index in_stride, int lanes, Lane* z) {
    if constexpr (K == Transform::negacyclic) {
      const Index m = n_ / 2;
      if (lanes < L) clear_lanes(z, layout_.extent(m));
      reals_to_lanes(z, in, in_stride, lanes, m, &Lane::re, layout_);
      reals_to_lanes(z, in + m, in_stride, lanes, m, &Lane::im, layout_);
    } else if (even_) {
      if (lanes < L) clear_lanes(z, layout_.extent(n_ / 2));
      rows_to_lanes(z, in, in_stride, lanes, n_ / 2, layout_);
    } else {
      load_odd(z, in, in_stride, lanes);
    }
  }

  /// With a visitor, visit(k, X_k) is called once per bin on the finished
  /// spectrum (and may change it), in the same pass as the real transform's
  /// post-twiddle.
  template <Transform K = Transform::real, class Visit = NoVisit>
  void forward_panel(Lane* z, Visit&& visit = {}) {
    if constexpr (K == Transform::negacyclic) {
      twist_conjugates(z, n_ / 2);  // θ^j·(x_j − i·x_{j+m})
      forward_transform(z);
      visit_bins(z, n_ / 2, visit);
    } else if (even_) {
      forward_transform(z);
      post_twiddle_all(z, visit);
    } else {
      forward_transform(z);
      visit_bins(z, bins(), visit);
    }
  }

  /// With a visitor, visit(k, X_k) is called once per bin before the
  /// inverse (and may change it), in the same pass as the pre-twiddle.
  template <Transform K = Transform::real, class Visit = NoVisit>
  void inverse_panel(Lane* z, Visit&& visit = {}) {
    if constexpr (K == Transform::negacyclic) {
      visit_bins(z, n_ / 2, visit);
      inverse_transform(z);
      // conj(θ^{−j}·s) = θ^j·conj(s): x_j = 2·Re, x_{j+m} = 2·Im of it (store_panel doubles).
      twist_conjugates(z, n_ / 2);
    } else if (even_) {
      pre_twiddle_all(z, visit);
      inverse_transform(z);
    } else {
      visit_bins(z, bins(), visit);
      complete_hermitian(z);
      inverse_transform(z);
    }
  }

  /// forward_panel, visit(k, X_k) once per bin, inverse_panel: for the real
  /// transform of even n the post-twiddle, the visits and the pre-twiddle
  /// are one pass over the spectrum (a pointwise product in between costs
  /// no pass of its own).
  template <Transform K = Transform::real, class Visit>
  void around_spectrum(Lane* z, Visit&& visit) {
    if (K == Transform::negacyclic || !even_) {
      forward_panel<K>(z, visit);
      inverse_panel<K>(z);
      return;
    }
    // Real, even n. The spectrum Z never leaves this function, so it stays in layout_.
    forward_transform(z, layout_);
    const Index m = n_ / 2;
    for (Index k = 0; k <= m / 2; ++k) {
      const Index k2 = m - k;
      C& zk = z[layout_.slot(k)];
      C& zk2 = z[layout_.slot(k == 0 ? 0 : k2)];
      const C a = zk, b = zk2;
      C x, x2;  // X_k and X_{m−k}
      post_twiddle(a, b, twiddle_[static_cast<std::size_t>(k)], x);
      visit(k, x);
      if (k2 != k) {
        post_twiddle(b, a, twiddle_[static_cast<std::size_t>(k2)], x2);
        visit(k2, x2);
      } else {
        x2 = x;
      }
      if (k == 0) x.im = x2.im = V{};  // X_0 and X_m: imaginary parts ignored
      pre_twiddle(x, x2, twiddle_[static_cast<std::size_t>(k)], zk);
      if (k2 != k && k2 < m) pre_twiddle(x2, x, twiddle_[static_cast<std::size_t>(k2)], zk2);
    }
    inverse_transform(z, layout_);
  }

  /// The first `lanes` rows of out = (or += with `accumulate`) scale · the signal in z.
  template <Transform K = Transform::real>
  void store_panel(const Lane* z, T* out, Index out_stride, int lanes, T scale, bool accumulate) {
    if constexpr (K == Transform::negacyclic) {
      const Index m = n_ / 2;
      lanes_to_reals(z, out, out_stride, lanes, m, &Lane::re, 2 * scale, accumulate, layout_);
      lanes_to_reals(z, out + m, out_stride, lanes, m, &Lane::im, 2 * scale, accumulate, layout_);
    } else if (even_) {
      lanes_to_rows(z, out, out_stride, lanes, n_ / 2, scale, accumulate, layout_);
    } else {
      store_odd(z, out, out_stride, lanes, scale, accumulate);
    }
  }

  // Between the two transforms in lanes (a square Toeplitz is a circulant
  // plus a skew-circulant; LDR chains them). Signals sit in different layouts
  // (real: (x_{2j}, x_{2j+1}); negacyclic: (x_j, x_{j+m})), so each direction
  // moves the signal across while applying the negacyclic twist: one pass.
  // "The signal" is what store_panel with scale 1 would write. Even n.

  /// inverse_panel<negacyclic>(z), then its signal times factor into `to`
  /// in the real layout (or added there with `accumulate`). z is used up.
  void negacyclic_inverse_to_real_layout(Lane* z, Lane* to, T factor, bool accumulate) {
    inverse_transform(z);
    const Index m = n_ / 2;
    const T f = 2 * factor;  // store_panel<negacyclic> doubles
    for (Index j = 0; j < m; ++j) {
      const T c = twist_[static_cast<std::size_t>(j)].real(), s = twist_[static_cast<std::size_t>(j)].imag();
      const C& v = z[layout_.slot(j)];
      const V low = (v.re * c + v.im * s) * f;   // x_j
      const V high = (v.re * s - v.im * c) * f;  // x_{j+m}
      put_real_layout(to, j, low, accumulate);
      put_real_layout(to, j + m, high, accumulate);
    }
  }

  /// A signal in the real layout (after load_panel<real> or inverse_panel<real>)
  /// times factor into `to` in the negacyclic layout, then forward_panel<negacyclic>(to).
  void real_layout_to_negacyclic_forward(const Lane* from, Lane* to, T factor) {
    const Index m = n_ / 2;
    for (Index j = 0; j < m; ++j) {
      const T c = twist_[static_cast<std::size_t>(j)].real(), s = twist_[static_cast<std::size_t>(j)].imag();
      const V low = real_layout(from, j) * factor, high = real_layout(from, j + m) * factor;
      C& v = to[layout_.slot(j)];
      v.re = low * c + high * s;  // θ^j·(x_j − i·x_{j+m})
      v.im = low * s - high * c;
    }
    forward_transform(to);
  }

 private:
  using C = Lane;
  using V = typename detail::Lanes<T>::type;
  static constexpr int L = detail::Lanes<T>::count;
  using Layout = detail::PanelLayout;

  // The complex FFT of a panel: signals in layout_, spectra natural (bin k
  // at k) unless they stay inside this class (then in layout_ as well).
  void forward_transform(C* z, Layout spectrum = {}) {
    plan_.template transform<false>(z, scratch_.data(), layout_, spectrum);
  }
  void inverse_transform(C* z, Layout spectrum = {}) {
    plan_.template transform<true>(z, scratch_.data(), spectrum, layout_);
  }

  /// Panels of rows through load → forward → scatter of the spectrum.
  template <Transform K>
  void transform_rows(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    const Index count = K == Transform::negacyclic ? n_ / 2 : bins();
    detail::for_each_panel(rows, L, [&](Index r0, int lanes, Index) {
      load_panel<K>(in + r0 * in_stride, in_stride, lanes, z_.data());
      if (K == Transform::real && even_) {
        forward_transform(z_.data(), layout_);
        scatter_post_twiddled(z_.data(), out + r0 * out_stride, out_stride, lanes);
        return;
      }
      forward_panel<K>(z_.data());
      scatter_complex(z_.data(), out + r0 * out_stride, out_stride, lanes, count);
    });
  }

  /// Panels of spectra through gather → times w → inverse → store.
  template <Transform K>
  void inverse_rows(const Complex* in, Index in_stride, const Complex* w, bool conj_w, T* out, Index out_stride,
                    Index rows, T scale, bool accumulate) {
    const Index count = K == Transform::negacyclic ? n_ / 2 : bins();
    C* z = z_.data();
    const auto times_w = [&](Index k, C& x) { detail::multiply_lane(x, detail::maybe_conj(w[k], conj_w)); };
    detail::for_each_panel(rows, L, [&](Index r0, int lanes, Index) {
      const Complex* spectra = in + r0 * in_stride;
      if (K == Transform::real && even_) {
        if (w == nullptr) gather_pre_twiddled(spectra, in_stride, lanes, z, NoVisit{});
        else gather_pre_twiddled(spectra, in_stride, lanes, z, times_w);
        inverse_transform(z, layout_);
      } else {
        if (lanes < L) clear_lanes(z, count);
        gather_complex(z, spectra, in_stride, lanes, count);
        if (w == nullptr) inverse_panel<K>(z);
        else inverse_panel<K>(z, times_w);
      }
      store_panel<K>(z, out + r0 * out_stride, out_stride, lanes, scale, accumulate);
    });
  }

  // Moving data between rows and lanes is a transpose. The odd-length paths
  // run it in blocks of kBlock elements so the lane buffer's block stays in
  // L1 while every row of the panel passes through it.
  static constexpr Index kBlock = 64;

  // A lane buffer seen as scalars: element j's real lanes start at re(j),
  // its imaginary lanes at im(j). Scalar access for the transposes avoids
  // read-modify-write of whole vectors (GCC lets a vector alias its elements).
  static T* flat(C* z) { return reinterpret_cast<T*>(z); }
  static const T* flat(const C* z) { return reinterpret_cast<const T*>(z); }
  static Index re(Index j) { return 2 * j * L; }
  static Index im(Index j) { return (2 * j + 1) * L; }

  /// Zeroes the unused lanes of a ragged panel so they stay finite.
  static void clear_lanes(C* z, Index count) {
    for (Index j = 0; j < count; ++j) z[j].re = z[j].im = V{};
  }

  /// z[j] ← (row[2j], row[2j+1]) per lane for j < count: rows of
  /// interleaved pairs (real input seen as pairs, or complex rows) into lanes.
  /// Full blocks of L/2 elements load L values from each row and transpose
  /// them in registers; the tail moves scalars. z in `layout` (whose gaps
  /// never split a block).
  static void rows_to_lanes(C* z, const T* in, Index in_stride, int lanes, Index count, Layout layout = {}) {
    constexpr Index half = L / 2;
    const Index full = count - count % half;
    detail::load_row_blocks<T>(in, in_stride, lanes, full / half, [&](Index b, const V* block) {
      C* to = z + layout.slot(b * half);
      for (Index c = 0; c < half; ++c) {
        to[c].re = block[2 * c];
        to[c].im = block[2 * c + 1];
      }
    });
    T* zf = flat(z);
    for (int l = 0; l < lanes; ++l)
      for (Index j = full; j < count; ++j) {
        zf[re(layout.slot(j)) + l] = in[l * in_stride + 2 * j];
        zf[im(layout.slot(j)) + l] = in[l * in_stride + 2 * j + 1];
      }
  }

  /// The reverse of rows_to_lanes, times scale: row[2j], row[2j+1] ← scale·z[j]
  /// (or += with `accumulate`).
  static void lanes_to_rows(const C* z, T* out, Index out_stride, int lanes, Index count, T scale,
                            bool accumulate = false, Layout layout = {}) {
    constexpr Index half = L / 2;
    const Index full = count - count % half;
    detail::store_row_blocks<T>(out, out_stride, lanes, full / half, accumulate, [&](Index b, V* block) {
      const C* from = z + layout.slot(b * half);
      for (Index c = 0; c < half; ++c) {
        block[2 * c] = from[c].re * scale;
        block[2 * c + 1] = from[c].im * scale;
      }
    });
    const T* zf = flat(z);
    for (int l = 0; l < lanes; ++l)
      for (Index j = full; j < count; ++j) {
        T* dst = out + l * out_stride + 2 * j;
        const T held_re = accumulate ? dst[0] : T(0), held_im = accumulate ? dst[1] : T(0);
        dst[0] = held_re + scale * zf[re(layout.slot(j)) + l];
        dst[1] = held_im + scale * zf[im(layout.slot(j)) + l];
      }
  }

  /// (z[j].*part) ← row[j] per lane for j < count: plain real rows into one
  /// part of the lanes, by blocks of L values transposed in registers.
  static void reals_to_lanes(C* z, const T* in, Index in_stride, int lanes, Index count, V C::*part,
                             Layout layout) {
    const Index full = count - count % L;
    detail::load_row_blocks<T>(in, in_stride, lanes, full / L, [&](Index b, const V* block) {
      C* to = z + layout.slot(b * L);
      for (Index c = 0; c < L; ++c) to[c].*part = block[c];
    });
    for (int l = 0; l < lanes; ++l)
      for (Index j = full; j < count; ++j) (z[layout.slot(j)].*part)[l] = in[l * in_stride + j];
  }

  /// The reverse of reals_to_lanes: row[j] ← scale·(z[j].*part) (+= with accumulate).
  static void lanes_to_reals(const C* z, T* out, Index out_stride, int lanes, Index count, V C::*part, T scale,
                             bool accumulate, Layout layout) {
    const Index full = count - count % L;
    detail::store_row_blocks<T>(out, out_stride, lanes, full / L, accumulate, [&](Index b, V* block) {
      const C* from = z + layout.slot(b * L);
      for (Index c = 0; c < L; ++c) block[c] = from[c].*part * scale;
    });
    for (int l = 0; l < lanes; ++l)
      for (Index j = full; j < count; ++j) {
        T* dst = out + l * out_stride + j;
        *dst = (accumulate ? *dst : T(0)) + scale * (z[layout.slot(j)].*part)[l];
      }
  }

  static void gather_complex(C* z, const Complex* in, Index in_stride, int lanes, Index count) {
    rows_to_lanes(z, reinterpret_cast<const T*>(in), 2 * in_stride, lanes, count);
  }
  static void scatter_complex(const C* z, Complex* out, Index out_stride, int lanes, Index count) {
    lanes_to_rows(z, reinterpret_cast<T*>(out), 2 * out_stride, lanes, count, T(1));
  }

  /// The spectrum X_0..X_m of Z_0..Z_{m−1} (even n, Z in layout_) scattered to rows,
  /// computed block by block as it is written: post_twiddle_all and
  /// scatter_complex in one pass, with z left as it was. Each X_k reads
  /// Z_k and Z_{m−k}, so the mirrored half is read twice, but nothing is
  /// written back to the panel.
  void scatter_post_twiddled(const C* z, Complex* out, Index out_stride, int lanes) const {
    const Index m = n_ / 2, count = m + 1;
    constexpr Index half = L / 2;
    const Index full = count - count % half;
    const auto spectrum = [&](Index k, C& x) {  // Z's indices are mod m
      post_twiddle(z[layout_.slot(k == m ? 0 : k)], z[layout_.slot(k == 0 ? 0 : m - k)],
                   twiddle_[static_cast<std::size_t>(k)], x);
    };
    T* rows = reinterpret_cast<T*>(out);
    detail::store_row_blocks<T>(rows, 2 * out_stride, lanes, full / half, false, [&](Index b, V* block) {
      for (Index c = 0; c < half; ++c) {
        C x;
        spectrum(b * half + c, x);
        block[2 * c] = x.re;
        block[2 * c + 1] = x.im;
      }
    });
    for (Index k = full; k < count; ++k) {
      C x;
      spectrum(k, x);
      for (int l = 0; l < lanes; ++l) out[l * out_stride + k] = Complex(x.re[l], x.im[l]);
    }
  }

  /// z_j ← θ^j·conj(z_j), j < count: the negacyclic transform's twist, the
  /// same on the way in (x_j − i·x_{j+m} is conj of x_j + i·x_{j+m}) and out.
  /// z is a signal, in layout_'s layout.
  void twist_conjugates(C* z, Index count) const {
    for (Index j = 0; j < count; ++j) {
      const T c = twist_[static_cast<std::size_t>(j)].real(), s = twist_[static_cast<std::size_t>(j)].imag();
      C& v = z[layout_.slot(j)];
      const V re = v.re * c + v.im * s;
      v.im = v.re * s - v.im * c;
      v.re = re;
    }
  }

  /// Element i of a signal in the real layout (in layout_'s), and its store.
  const V& real_layout(const C* z, Index i) const {
    const C& v = z[layout_.slot(i / 2)];
    return i % 2 == 0 ? v.re : v.im;
  }
  void put_real_layout(C* z, Index i, const V& v, bool accumulate) const {
    C& e = z[layout_.slot(i / 2)];
    V& dst = i % 2 == 0 ? e.re : e.im;
    if (accumulate) dst += v;
    else dst = v;
  }

  void require_even(const char* who) const {
    PEFT_REQUIRE(even_, "VectorizedFFT::", who, ": the negacyclic transform needs an even length, got n = ", n_);
  }

  /// Z_0..Z_{m−1} → X_0..X_m in place (even n), visiting each X_k. X_k and
  /// X_{m−k} both come from Z_k and Z_{m−k}: each pair is computed together.
  template <class Visit>
  void post_twiddle_all(C* z, Visit& visit) const {
    const Index m = n_ / 2;
    for (Index k = 0; k <= m / 2; ++k) {
      const Index k2 = m - k;
      const C a = z[k], b = z[k == 0 ? 0 : k2];
      post_twiddle(a, b, twiddle_[static_cast<std::size_t>(k)], z[k]);
      visit(k, z[k]);
      if (k2 != k) {
        post_twiddle(b, a, twiddle_[static_cast<std::size_t>(k2)], z[k2]);
        visit(k2, z[k2]);
      }
    }
  }

  template <class Visit>
  static void visit_bins(C* z, Index count, Visit& visit) {
    if constexpr (!std::is_same_v<std::remove_cvref_t<Visit>, NoVisit>)
      for (Index k = 0; k < count; ++k) visit(k, z[k]);
  }

  /// X = E + w·O with E = (a + conj b)/2, O = −i(a − conj b)/2, a = Z_k, b = Z_{m−k}, w = W^k.
  static void post_twiddle(const C& a, const C& b, const Complex& w, C& x) {
    const V er = (a.re + b.re) * T(0.5), ei = (a.im - b.im) * T(0.5);
    const V orr = (a.im + b.im) * T(0.5), oi = (b.re - a.re) * T(0.5);
    x.re = er + orr * w.real() - oi * w.imag();
    x.im = ei + orr * w.imag() + oi * w.real();
  }

  /// X_0..X_m → the Z_0..Z_{m−1} whose inverse is n·x, in place (even n),
  /// visiting each X_k first. The imaginary parts of X_0 and X_m are ignored.
  template <class Visit>
  void pre_twiddle_all(C* z, Visit& visit) const {
    pre_twiddle_pairs(z, 0, z, Layout{}, visit);
  }

  /// The pairs (k, m − k) of pre_twiddle_all for k ≥ first, reading X_k at
  /// x[k − first] (visited there) and writing Z_k into z in `layout`.
  template <class Visit>
  void pre_twiddle_pairs(C* x, Index first, C* z, Layout layout, Visit& visit) const {
    const Index m = n_ / 2;
    for (Index k = first; k <= m / 2; ++k) {
      const Index k2 = m - k;
      C& a = x[k - first];
      C& b = x[k2 - first];
      visit(k, a);
      if (k2 != k) visit(k2, b);
      if (k == 0) a.im = b.im = V{};
      const C xk = a, xk2 = b;
      pre_twiddle(xk, xk2, twiddle_[static_cast<std::size_t>(k)], z[layout.slot(k)]);
      if (k2 != k && k2 < m) pre_twiddle(xk2, xk, twiddle_[static_cast<std::size_t>(k2)], z[layout.slot(k2)]);
    }
  }

  /// gather_complex, the visits and pre_twiddle_all in one pass (even n):
  /// a block of bins k from the front of the rows and the block of their
  /// mirrors m − k from the back are gathered together, and each pair gives
  /// Z_k and Z_{m−k} straight into z (in layout_). The middle bins left over
  /// (around m/2, at most L + 1) are gathered into a small buffer first.
  template <class Visit>
  void gather_pre_twiddled(const Complex* in, Index in_stride, int lanes, C* z, Visit&& visit) const {
    const Index m = n_ / 2;
    constexpr Index half = L / 2;
    const T* rows = reinterpret_cast<const T*>(in);
    const Index stride = 2 * in_stride;
    V low[L], high[L];
    detail::RowBlockReader<T> fronts(rows, stride, lanes), backs(rows, stride, lanes);
    const Index pairs = m / (2 * half);
    const auto front = [](Index i) { return i * L; };                        // bins [k0, k0 + half), k0 = i·half
    const auto back = [m](Index i) { return 2 * (m - (i + 1) * half + 1); };  // bins [m − k0 − half + 1, m − k0]
    for (Index i = 0; i < pairs; ++i) {
      fronts.read(i, pairs, front, low);
      backs.read(i, pairs, back, high);
      const Index k0 = i * half;
      for (Index c = 0; c < half; ++c) {
        const Index k = k0 + c, k2 = m - k, mirror = half - 1 - c;
        C a{low[2 * c], low[2 * c + 1]}, b{high[2 * mirror], high[2 * mirror + 1]};
        visit(k, a);
        visit(k2, b);
        if (k == 0) a.im = b.im = V{};  // X_0 and X_m: imaginary parts ignored
        pre_twiddle(a, b, twiddle_[static_cast<std::size_t>(k)], z[layout_.slot(k)]);
        if (k2 < m) pre_twiddle(b, a, twiddle_[static_cast<std::size_t>(k2)], z[layout_.slot(k2)]);
      }
    }
    const Index k0 = pairs * half, middle = m - 2 * k0 + 1;  // bins k0..m − k0
    C mid[L + 1];
    if (lanes < L) clear_lanes(mid, middle);
    gather_complex(mid, in + k0, in_stride, lanes, middle);
    pre_twiddle_pairs(mid, k0, z, layout_, visit);
  }

  /// Z = (a + conj b) + i·conj(w)·(a − conj b), with a = X_k, b = X_{m−k}, w = W^k.
  static void pre_twiddle(const C& a, const C& b, const Complex& w, C& z) {
    const V sr = a.re + b.re, si = a.im - b.im;
    const V dr = a.re - b.re, di = a.im + b.im;
    // conj(w)·d
    const V tr = dr * w.real() + di * w.imag();
    const V ti = di * w.real() - dr * w.imag();
    z.re = sr - ti;  // + i·(tr + i·ti) = −ti + i·tr
    z.im = si + tr;
  }

  /// Odd n: (x_j, 0) per lane, j < n.
  void load_odd(C* z, const T* in, Index in_stride, int lanes) const {
    if (lanes < L) clear_lanes(z, n_);
    for (Index j0 = 0; j0 < n_; j0 += kBlock) {
      const Index j1 = std::min(n_, j0 + kBlock);
      for (Index j = j0; j < j1; ++j) z[j].im = V{};
      for (int l = 0; l < lanes; ++l) {
        const T* row = in + l * in_stride;
        for (Index j = j0; j < j1; ++j) flat(z)[re(j) + l] = row[j];
      }
    }
  }

  /// Odd n: the full spectrum from its first bins() (DC's imaginary part ignored).
  void complete_hermitian(C* z) const {
    z[0].im = V{};
    for (Index k = 1; k < bins(); ++k) {
      z[n_ - k].re = z[k].re;
      z[n_ - k].im = -z[k].im;
    }
  }

  /// Odd n: rows ← scale · the real parts (+= with accumulate).
  void store_odd(const C* z, T* out, Index out_stride, int lanes, T scale, bool accumulate) const {
    const T* zf = flat(z);
    for (Index j0 = 0; j0 < n_; j0 += kBlock) {
      const Index j1 = std::min(n_, j0 + kBlock);
      for (int l = 0; l < lanes; ++l) {
        T* row = out + l * out_stride;
        if (accumulate)
          for (Index j = j0; j < j1; ++j) row[j] += scale * zf[re(j) + l];
        else
          for (Index j = j0; j < j1; ++j) row[j] = scale * zf[re(j) + l];
      }
    }
  }

  Index n_;
  bool even_ = true;
  detail::ComplexPlan<T> plan_;
  detail::PanelLayout layout_;    // signals and internal spectra in a panel buffer (see PanelLayout)
  std::vector<C> z_, scratch_;    // the row functions' panel buffer, the complex FFT's scratch
  std::vector<Complex> twiddle_;  // W^k, k = 0..m (even n)
  std::vector<Complex> twist_;    // θ^j = e^{−iπj/n}, j < m (even n)
};

}  // namespace peft::fft
