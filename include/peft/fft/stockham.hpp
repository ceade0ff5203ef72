#pragma once
// Complex FFT of length m on lane vectors: mixed radix 8, 4, 6, 2, 3, 5 in
// Stockham's autosort form (each stage reads one buffer and writes the other
// in natural order, so no bit reversal), for m whose only prime factors are
// 2, 3 and 5. Forward: X_k = Σ_j x_j·e^{−2πi jk/m}; inverse flips the sign;
// neither scales.
//
// Stage with radix p on a sequence of current length n = p·q and stride s:
//   for j < q, t < s:  a_r = src[t + s·(j + r·q)],  r < p
//                      b_k = Σ_r a_r·ω_p^{rk}        (a size-p DFT)
//                      dst[t + s·(p·j + k)] = b_k·w^{jk},  w = e^{∓2πi/n}
// then n ← q, s ← s·p. After the last stage the data are in natural order.
// The last stage has q = 1: each of its DFTs reads and writes the same p
// slots t + s·r, so it runs in place, and no final copy is ever needed
// (stages alternate between the two buffers so that the last one lands in x).
//
// Once the panel outgrows L1 each pass is bound by streaming it through L2,
// not by arithmetic, so two stages are fused into one pass of radix p1·p2
// (8·8, 8·4, ...): its size-p DFT is split as Cooley–Tukey in registers and
// a small buffer that stays in L1. With r = p2·r1 + r2, k = k1 + p1·k2:
//   c[r2][k1] = ω_p^{r2·k1} · Σ_{r1} a_{p2·r1+r2}·ω_{p1}^{r1·k1}
//   b_{k1+p1·k2} = Σ_{r2} c[r2][k1]·ω_{p2}^{r2·k2}
// (m = 2048: two passes instead of four, the transform ~20% faster).

#include <bit>
#include <cmath>
#include <cstdint>
#include <complex>
#include <numbers>
#include <utility>
#include <vector>

#include <peft/core/types.hpp>
#include <peft/fft/lanes.hpp>

// The size-p DFTs and rotations must be inlined into the passes (their
// operands then stay in registers); GCC stops inlining them on its own once
// there are many passes to instantiate.
#if defined(__GNUC__) || defined(__clang__)
#define PEFT_FFT_INLINE [[gnu::always_inline]] inline
#else
#define PEFT_FFT_INLINE inline
#endif

namespace peft::fft::detail {

/// Radices (8 first, then 4, 6, 2, 3, 5) whose product is m, or empty if m
/// has another prime factor. Large radices mean fewer passes over the panel,
/// which is what bounds the speed once the panel no longer fits in L1.
inline std::vector<int> stockham_radices(Index m) {
  std::vector<int> radices;
  while (m % 8 == 0) radices.push_back(8), m /= 8;
  while (m % 4 == 0) radices.push_back(4), m /= 4;
  while (m % 6 == 0) radices.push_back(6), m /= 6;
  for (const int p : {2, 3, 5})
    while (m % p == 0) radices.push_back(p), m /= p;
  if (m != 1) radices.clear();
  return radices;
}

/// Panels of at least this many elements go through fused passes: 64 KiB
/// and up (16 float or 8 double lanes) no longer fit in L1 (m = 256 measured
/// ~4% slower fused, m = 1024 ~15% faster).
inline constexpr Index kFusedPassesFrom = 512;

/// Power-of-two lengths from this one on keep their work buffer padded
/// (PanelLayout) and can take and give signals padded (round trips on the
/// EPYC: m = 256 ~3–6% faster padded, m = 128, whose panels fit L1, level).
inline constexpr Index kPaddedFrom = 256;

template <class T>
class Stockham {
 public:
  using C = LaneComplex<T>;
  using V = typename Lanes<T>::type;

  Stockham() = default;
  /// Requires stockham_radices(m) to be non-empty (or m == 1).
  explicit Stockham(Index m) : m_(m) {
    const std::vector<int> radices = stockham_radices(m);
    for (std::size_t i = 0; i < radices.size(); ++i) {
      Pass pass{radices[i], 1, {}, {}};
      const bool fusable = i + 1 < radices.size() && radices[i] == 8 &&
                           (radices[i + 1] == 8 || radices[i + 1] == 4 || radices[i + 1] == 6 || radices[i + 1] == 2);
      if (m >= kFusedPassesFrom && fusable) pass.p2 = radices[++i];
      passes_.push_back(std::move(pass));
    }
    Index n = m;
    for (Pass& pass : passes_) {
      const int p = pass.p1 * pass.p2;
      const Index q = n / p;
      pass.twiddles.resize(static_cast<std::size_t>(q * (p - 1)));
      for (Index j = 0; j < q; ++j)
        for (int k = 1; k < p; ++k) pass.twiddles[static_cast<std::size_t>(j * (p - 1) + k - 1)] = root(j * k, n);
      if (pass.p2 > 1) {
        pass.inner.resize(static_cast<std::size_t>(p));
        for (int r2 = 0; r2 < pass.p2; ++r2)
          for (int k1 = 0; k1 < pass.p1; ++k1) pass.inner[static_cast<std::size_t>(r2 * pass.p1 + k1)] = root(r2 * k1, p);
      }
      n = q;
    }
    // A gap every 4 KiB (see PanelLayout) once the strides are 4 KiB
    // multiples; the gap period must hold whole blocks of lanes, which the
    // panel's row moves work in.
    const Index period = 4096 / static_cast<Index>(sizeof(C));
    if (std::has_single_bit(static_cast<std::uint64_t>(m)) && m >= kPaddedFrom && passes_.size() >= 2 &&
        period >= Lanes<T>::count && std::has_single_bit(static_cast<std::uint64_t>(period)))
      padded_.shift = std::countr_zero(static_cast<std::uint64_t>(period));
  }

  Index size() const { return m_; }
  /// The layout of the work buffer, which transform() can also take its
  /// input in and give its output in (natural where padding does not pay).
  PanelLayout padded_layout() const { return padded_; }
  /// Elements of the work buffer transform() needs.
  Index work_size() const { return padded_.extent(m_); }

  /// Transforms x (m elements) in place; work holds work_size() elements
  /// of scratch. x is read in layout `in` and written in layout `out`, each
  /// natural or padded_layout(); with a single pass they must be the same.
  template <bool Inverse>
  void transform(C* x, C* work, PanelLayout in = {}, PanelLayout out = {}) const {
    // Pass i < last writes work for even i, x for odd i (its input is then
    // used up), so the last pass reads x after an odd number of passes and
    // runs in place there, which needs x's intermediate layout to be `out`.
    const std::size_t count = passes_.size();
    const bool last_in_place = count % 2 == 1;
    const C* src = x;
    PanelLayout from = in;
    Index n = m_, s = 1;
    for (std::size_t i = 0; i < count; ++i) {
      const Pass& pass = passes_[i];
      const int p = pass.p1 * pass.p2;
      const Index q = n / p;
      const bool last = i + 1 == count;
      C* dst = last ? x : i % 2 == 0 ? work : x;
      const PanelLayout to = last || (dst == x && last_in_place) ? out : padded_;
      if (pass.p2 == 1) run_stage<Inverse>(pass.p1, src, dst, q, s, pass.twiddles.data(), from, to);
      else run_fused<Inverse>(pass, src, dst, q, s, from, to);
      src = dst;
      from = to;
      n = q;
      s *= p;
    }
  }

 private:
  // One pass over the panel: a stage of radix p1 (p2 == 1) or two fused
  // stages of radix p1·p2. twiddles: w^{jk}, j < q, 0 < k < p; inner:
  // ω_p^{r2·k1} at r2·p1 + k1.
  struct Pass {
    int p1, p2;
    std::vector<std::complex<T>> twiddles, inner;
  };

  /// e^{−2πi·a/b}, computed in double (long double for double) so it is correctly rounded.
  static std::complex<T> root(Index a, Index b) {
    using Wide = std::conditional_t<std::is_same_v<T, float>, double, long double>;
    const Wide angle = -2 * std::numbers::pi_v<Wide> * static_cast<Wide>(a % b) / static_cast<Wide>(b);
    return std::complex<T>(static_cast<T>(std::cos(angle)), static_cast<T>(std::sin(angle)));
  }

  /// b ← b·w for a scalar twiddle w (conjugated for the inverse).
  template <bool Inverse>
  PEFT_FFT_INLINE static void rotate(C& b, const std::complex<T>& w) {
    const T wr = w.real(), wi = Inverse ? -w.imag() : w.imag();
    const V re = b.re * wr - b.im * wi;
    b.im = b.re * wi + b.im * wr;
    b.re = re;
  }

  /// −i·z for the forward transform, +i·z for the inverse, into out.
  template <bool Inverse>
  PEFT_FFT_INLINE static void times_minus_i(const V& re, const V& im, V& out_re, V& out_im) {
    if constexpr (Inverse) {
      out_re = -im;
      out_im = re;
    } else {
      out_re = im;
      out_im = -re;
    }
  }

  // Size-p DFTs (forward sign; Inverse conjugates the rotations) in place on a[0..p).
  template <bool Inverse>
  PEFT_FFT_INLINE static void dft2(C* a) {
    const C t = a[1];
    a[1].re = a[0].re - t.re;
    a[1].im = a[0].im - t.im;
    a[0].re += t.re;
    a[0].im += t.im;
  }

  template <bool Inverse>
  PEFT_FFT_INLINE static void dft4(C* a) {
    // b0 = (a0+a2)+(a1+a3), b2 = (a0+a2)−(a1+a3), b1 = (a0−a2) − i(a1−a3), b3 = (a0−a2) + i(a1−a3)
    const V t0r = a[0].re + a[2].re, t0i = a[0].im + a[2].im;
    const V t1r = a[0].re - a[2].re, t1i = a[0].im - a[2].im;
    const V t2r = a[1].re + a[3].re, t2i = a[1].im + a[3].im;
    V t3r = a[1].re - a[3].re, t3i = a[1].im - a[3].im;
    V ur, ui;
    times_minus_i<Inverse>(t3r, t3i, ur, ui);
    a[0].re = t0r + t2r;
    a[0].im = t0i + t2i;
    a[2].re = t0r - t2r;
    a[2].im = t0i - t2i;
    a[1].re = t1r + ur;
    a[1].im = t1i + ui;
    a[3].re = t1r - ur;
    a[3].im = t1i - ui;
  }

  template <bool Inverse>
  PEFT_FFT_INLINE static void dft3(C* a) {
    // b0 = a0 + t1, b1,2 = (a0 − t1/2) ∓ i(√3/2)(a1 − a2), t1 = a1 + a2
    const T h = static_cast<T>(0.866025403784438646763723170752936183L);  // √3/2
    const V t1r = a[1].re + a[2].re, t1i = a[1].im + a[2].im;
    const V t2r = (a[1].re - a[2].re) * h, t2i = (a[1].im - a[2].im) * h;
    const V mr = a[0].re - t1r * T(0.5), mi = a[0].im - t1i * T(0.5);
    V ur, ui;
    times_minus_i<Inverse>(t2r, t2i, ur, ui);
    a[0].re += t1r;
    a[0].im += t1i;
    a[1].re = mr + ur;
    a[1].im = mi + ui;
    a[2].re = mr - ur;
    a[2].im = mi - ui;
  }

  template <bool Inverse>
  PEFT_FFT_INLINE static void dft5(C* a) {
    // With t1 = a1+a4, t2 = a2+a3, t3 = a1−a4, t4 = a2−a3 and c_k = cos(2πk/5), s_k = sin(2πk/5):
    // b1,4 = a0 + c1·t1 + c2·t2 ∓ i(s1·t3 + s2·t4),  b2,3 = a0 + c2·t1 + c1·t2 ∓ i(s2·t3 − s1·t4)
    const T c1 = static_cast<T>(0.309016994374947424102293417182819059L);
    const T c2 = static_cast<T>(-0.809016994374947424102293417182819059L);
    const T s1 = static_cast<T>(0.951056516295153572116439333379382143L);
    const T s2 = static_cast<T>(0.587785252292473129168705954639072769L);
    const V t1r = a[1].re + a[4].re, t1i = a[1].im + a[4].im;
    const V t2r = a[2].re + a[3].re, t2i = a[2].im + a[3].im;
    const V t3r = a[1].re - a[4].re, t3i = a[1].im - a[4].im;
    const V t4r = a[2].re - a[3].re, t4i = a[2].im - a[3].im;
    const V m1r = a[0].re + c1 * t1r + c2 * t2r, m1i = a[0].im + c1 * t1i + c2 * t2i;
    const V m2r = a[0].re + c2 * t1r + c1 * t2r, m2i = a[0].im + c2 * t1i + c1 * t2i;
    const V n1r = s1 * t3r + s2 * t4r, n1i = s1 * t3i + s2 * t4i;
    const V n2r = s2 * t3r - s1 * t4r, n2i = s2 * t3i - s1 * t4i;
    V u1r, u1i, u2r, u2i;
    times_minus_i<Inverse>(n1r, n1i, u1r, u1i);
    times_minus_i<Inverse>(n2r, n2i, u2r, u2i);
    a[0].re += t1r + t2r;
    a[0].im += t1i + t2i;
    a[1].re = m1r + u1r;
    a[1].im = m1i + u1i;
    a[4].re = m1r - u1r;
    a[4].im = m1i - u1i;
    a[2].re = m2r + u2r;
    a[2].im = m2i + u2i;
    a[3].re = m2r - u2r;
    a[3].im = m2i - u2i;
  }

  template <bool Inverse>
  PEFT_FFT_INLINE static void dft6(C* a) {
    // Good–Thomas (2 and 3 are coprime, so no twiddles between them): with
    // input j = 3·j1 + 2·j2 and output k = 3·k1 + 4·k2 (mod 6), ω6^{jk} =
    // ω2^{j1·k1}·ω3^{j2·k2}. Size-2 DFTs on the pairs (a0, a3), (a2, a5),
    // (a4, a1), then size-3 DFTs over their sums (k1 = 0) and differences (k1 = 1).
    C sum[3], diff[3];
    for (int j2 = 0; j2 < 3; ++j2) {
      const C& x = a[2 * j2];
      const C& y = a[(2 * j2 + 3) % 6];
      sum[j2].re = x.re + y.re;
      sum[j2].im = x.im + y.im;
      diff[j2].re = x.re - y.re;
      diff[j2].im = x.im - y.im;
    }
    dft3<Inverse>(sum);
    dft3<Inverse>(diff);
    a[0] = sum[0];
    a[4] = sum[1];
    a[2] = sum[2];
    a[3] = diff[0];
    a[1] = diff[1];
    a[5] = diff[2];
  }

  template <bool Inverse>
  PEFT_FFT_INLINE static void dft8(C* a) {
    // Two size-4 DFTs on the even and odd inputs E, O, then
    // b_k = E_k + ω8^k·O_k, b_{k+4} = E_k − ω8^k·O_k with ω8 = e^{∓iπ/4}.
    C e[4] = {a[0], a[2], a[4], a[6]};
    C o[4] = {a[1], a[3], a[5], a[7]};
    dft4<Inverse>(e);
    dft4<Inverse>(o);
    const T h = static_cast<T>(0.707106781186547524400844362104849039L);  // √2/2
    V r, i;
    // ω8·o1 = h·(o1 − i·o1) (forward); ω8²·o2 = −i·o2; ω8³·o3 = h·(−o3 − i·o3)
    times_minus_i<Inverse>(o[1].re, o[1].im, r, i);
    o[1].re = (o[1].re + r) * h;
    o[1].im = (o[1].im + i) * h;
    times_minus_i<Inverse>(o[2].re, o[2].im, r, i);
    o[2].re = r;
    o[2].im = i;
    times_minus_i<Inverse>(o[3].re, o[3].im, r, i);
    o[3].re = (r - o[3].re) * h;
    o[3].im = (i - o[3].im) * h;
    for (int k = 0; k < 4; ++k) {
      a[k].re = e[k].re + o[k].re;
      a[k].im = e[k].im + o[k].im;
      a[k + 4].re = e[k].re - o[k].re;
      a[k + 4].im = e[k].im - o[k].im;
    }
  }

  template <int P, bool Inverse>
  PEFT_FFT_INLINE static void dft(C* a) {
    if constexpr (P == 2) dft2<Inverse>(a);
    else if constexpr (P == 3) dft3<Inverse>(a);
    else if constexpr (P == 4) dft4<Inverse>(a);
    else if constexpr (P == 8) dft8<Inverse>(a);
    else if constexpr (P == 6) dft6<Inverse>(a);
    else dft5<Inverse>(a);
  }

  // Every pass reads src in layout `from` and writes dst in layout `to`.
  template <bool Inverse>
  static void run_stage(int p, const C* src, C* dst, Index q, Index s, const std::complex<T>* w, PanelLayout from,
                        PanelLayout to) {
    switch (p) {
      case 8: stage_pass<8, Inverse>(src, dst, q, s, w, from, to); break;
      case 4: stage_pass<4, Inverse>(src, dst, q, s, w, from, to); break;
      case 2: stage_pass<2, Inverse>(src, dst, q, s, w, from, to); break;
      case 3: stage_pass<3, Inverse>(src, dst, q, s, w, from, to); break;
      case 6: stage_pass<6, Inverse>(src, dst, q, s, w, from, to); break;
      default: stage_pass<5, Inverse>(src, dst, q, s, w, from, to); break;
    }
  }

  template <bool Inverse>
  static void run_fused(const Pass& pass, const C* src, C* dst, Index q, Index s, PanelLayout from, PanelLayout to) {
    const std::complex<T>*w = pass.twiddles.data(), *inner = pass.inner.data();
    switch (pass.p2) {  // p1 is 8
      case 8: fused_pass<8, 8, Inverse>(src, dst, q, s, w, inner, from, to); break;
      case 4: fused_pass<8, 4, Inverse>(src, dst, q, s, w, inner, from, to); break;
      case 6: fused_pass<8, 6, Inverse>(src, dst, q, s, w, inner, from, to); break;
      default: fused_pass<8, 2, Inverse>(src, dst, q, s, w, inner, from, to); break;
    }
  }

  // A stage of radix P; in place when q == 1 (the last), as every DFT reads
  // its P inputs before writing. j = 0 has no twiddles (and q == 1 only that).
  template <int P, bool Inverse>
  static void stage_pass(const C* src, C* dst, Index q, Index s, const std::complex<T>* w, PanelLayout from,
                         PanelLayout to) {
    for (Index j = 0; j < q; ++j) {
      if (j == 0) stage_column<P, Inverse, false>(src, dst, j, q, s, w, from, to);
      else stage_column<P, Inverse, true>(src, dst, j, q, s, w + j * (P - 1), from, to);
    }
  }

  template <int P, bool Inverse, bool Twiddled>
  static void stage_column(const C* src, C* dst, Index j, Index q, Index s, const std::complex<T>* wj,
                           PanelLayout from, PanelLayout to) {
    C a[P];
    for (Index t = 0; t < s; ++t) {
      for (int r = 0; r < P; ++r) a[r] = src[from.slot(t + s * (j + r * q))];
      dft<P, Inverse>(a);
      dst[to.slot(t + s * P * j)] = a[0];
      for (int k = 1; k < P; ++k) {
        if constexpr (Twiddled) rotate<Inverse>(a[k], wj[k - 1]);
        dst[to.slot(t + s * (P * j + k))] = a[k];
      }
    }
  }

  // Two stages in one pass: a stage of radix P = P1·P2 whose size-P DFT is
  // P2 DFTs of size P1, the inner twiddles, and P1 DFTs of size P2 (above).
  template <int P1, int P2, bool Inverse>
  static void fused_pass(const C* src, C* dst, Index q, Index s, const std::complex<T>* w,
                         const std::complex<T>* inner, PanelLayout from, PanelLayout to) {
    for (Index j = 0; j < q; ++j) {
      if (j == 0) fused_column<P1, P2, Inverse, false>(src, dst, j, q, s, w, inner, from, to);
      else fused_column<P1, P2, Inverse, true>(src, dst, j, q, s, w + j * (P1 * P2 - 1), inner, from, to);
    }
  }

  template <int P1, int P2, bool Inverse, bool Twiddled>
  static void fused_column(const C* src, C* dst, Index j, Index q, Index s, const std::complex<T>* wj,
                           const std::complex<T>* inner, PanelLayout from, PanelLayout to) {
    constexpr int P = P1 * P2;
    C c[P];  // c[r2·P1 + k1], in L1
    for (Index t = 0; t < s; ++t) {
      for (int r2 = 0; r2 < P2; ++r2) {
        C u[P1];
        for (int r1 = 0; r1 < P1; ++r1) u[r1] = src[from.slot(t + s * (j + (P2 * r1 + r2) * q))];
        dft<P1, Inverse>(u);
        c[r2 * P1] = u[0];
        for (int k1 = 1; k1 < P1; ++k1) {
          if (r2 != 0) rotate<Inverse>(u[k1], inner[r2 * P1 + k1]);
          c[r2 * P1 + k1] = u[k1];
        }
      }
      for (int k1 = 0; k1 < P1; ++k1) {
        C u[P2];
        for (int r2 = 0; r2 < P2; ++r2) u[r2] = c[r2 * P1 + k1];
        dft<P2, Inverse>(u);
        for (int k2 = 0; k2 < P2; ++k2) {
          const int k = k1 + P1 * k2;
          if (Twiddled && k != 0) rotate<Inverse>(u[k2], wj[k - 1]);
          dst[to.slot(t + s * (P * j + k))] = u[k2];
        }
      }
    }
  }

  Index m_ = 1;
  std::vector<Pass> passes_;
  PanelLayout padded_;  // the work buffer's layout
};

}  // namespace peft::fft::detail
