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
// slots t + s·r, so it can run in place, and no final copy is ever needed
// (stages alternate between the two buffers so that the last one lands in x).
// The first stage may read its input, and the last hand over its output,
// through functions: a twist before or a pointwise step after the transform
// then costs no pass over the panel of its own.

#include <cmath>
#include <complex>
#include <numbers>
#include <utility>
#include <vector>

#include <peft/core/types.hpp>
#include <peft/fft/lanes.hpp>

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

template <class T>
class Stockham {
 public:
  using C = LaneComplex<T>;
  using V = typename Lanes<T>::type;

  Stockham() = default;
  /// Requires stockham_radices(m) to be non-empty (or m == 1).
  explicit Stockham(Index m) : m_(m), radices_(stockham_radices(m)) {
    Index n = m;
    for (const int p : radices_) {
      const Index q = n / p;
      std::vector<std::complex<T>> w(static_cast<std::size_t>(q * (p - 1)));
      for (Index j = 0; j < q; ++j)
        for (int k = 1; k < p; ++k) {
          // Twiddles in double (long double for double) so they are correctly rounded.
          using Wide = std::conditional_t<std::is_same_v<T, float>, double, long double>;
          const Wide angle = -2 * std::numbers::pi_v<Wide> * static_cast<Wide>((j * k) % n) / static_cast<Wide>(n);
          w[static_cast<std::size_t>(j * (p - 1) + k - 1)] =
              std::complex<T>(static_cast<T>(std::cos(angle)), static_cast<T>(std::sin(angle)));
        }
      twiddles_.push_back(std::move(w));
      n = q;
    }
  }

  Index size() const { return m_; }

  /// Transforms x (m elements) in place; work holds m elements of scratch.
  template <bool Inverse>
  void transform(C* x, C* work) const {
    transform<Inverse>(x, work, [x](Index i) { return x[i]; }, [x](Index k, const C& v) { x[k] = v; });
  }

  /// The transform of the sequence load(i), i < m, handed out as
  /// store(k, X_k), each k < m once. x and work (m elements each) carry the
  /// stages in between and are overwritten. load may read x but not work;
  /// store may write x[k] itself, or any buffer other than x and work.
  template <bool Inverse, class Load, class Store>
  void transform(C* x, C* work, Load&& load, Store&& store) const {
    const std::size_t stages = radices_.size();
    if (stages == 0) {  // m == 1
      store(0, load(0));
      return;
    }
    // Stage i < last writes work for even i, x for odd i (its input is then
    // used up), so the last stage reads x when there is an odd number of
    // stages and runs in place there.
    const C* src = nullptr;
    Index n = m_, s = 1;
    for (std::size_t stage = 0; stage < stages; ++stage) {
      const int p = radices_[stage];
      const Index q = n / p;
      const std::complex<T>* w = twiddles_[stage].data();
      C* dst = stage % 2 == 0 ? work : x;
      const auto read = [src](Index i) { return src[i]; };
      const auto write = [dst](Index i, const C& v) { dst[i] = v; };
      const bool first = stage == 0, last = stage + 1 == stages;
      if (first && last) run_stage<Inverse>(p, load, store, q, s, w);
      else if (first) run_stage<Inverse>(p, load, write, q, s, w);
      else if (last) run_stage<Inverse>(p, read, store, q, s, w);
      else run_stage<Inverse>(p, read, write, q, s, w);
      src = dst;
      n = q;
      s *= p;
    }
  }

 private:
  /// b ← b·w for a scalar twiddle w (conjugated for the inverse).
  template <bool Inverse>
  static void rotate(C& b, const std::complex<T>& w) {
    const T wr = w.real(), wi = Inverse ? -w.imag() : w.imag();
    const V re = b.re * wr - b.im * wi;
    b.im = b.re * wi + b.im * wr;
    b.re = re;
  }

  /// −i·z for the forward transform, +i·z for the inverse, into out.
  template <bool Inverse>
  static void times_minus_i(const V& re, const V& im, V& out_re, V& out_im) {
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
  static void dft2(C* a) {
    const C t = a[1];
    a[1].re = a[0].re - t.re;
    a[1].im = a[0].im - t.im;
    a[0].re += t.re;
    a[0].im += t.im;
  }

  template <bool Inverse>
  static void dft4(C* a) {
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
  static void dft3(C* a) {
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
  static void dft5(C* a) {
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
  static void dft6(C* a) {
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
  static void dft8(C* a) {
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

  template <bool Inverse, class Load, class Store>
  static void run_stage(int p, Load& load, Store& store, Index q, Index s, const std::complex<T>* w) {
    switch (p) {
      case 8: stage_pass<8, Inverse>(load, store, q, s, w); break;
      case 4: stage_pass<4, Inverse>(load, store, q, s, w); break;
      case 2: stage_pass<2, Inverse>(load, store, q, s, w); break;
      case 3: stage_pass<3, Inverse>(load, store, q, s, w); break;
      case 6: stage_pass<6, Inverse>(load, store, q, s, w); break;
      default: stage_pass<5, Inverse>(load, store, q, s, w); break;
    }
  }

  template <int P, bool Inverse, class Load, class Store>
  static void stage_pass(Load& load, Store& store, Index q, Index s, const std::complex<T>* w) {
    C a[P];
    for (Index j = 0; j < q; ++j) {
      const std::complex<T>* wj = w + j * (P - 1);
      for (Index t = 0; t < s; ++t) {
        for (int r = 0; r < P; ++r) a[r] = load(t + s * (j + r * q));
        if constexpr (P == 2) dft2<Inverse>(a);
        else if constexpr (P == 3) dft3<Inverse>(a);
        else if constexpr (P == 4) dft4<Inverse>(a);
        else if constexpr (P == 8) dft8<Inverse>(a);
        else if constexpr (P == 6) dft6<Inverse>(a);
        else dft5<Inverse>(a);
        store(t + s * P * j, a[0]);
        if (j == 0) {
          for (int k = 1; k < P; ++k) store(t + s * (P * j + k), a[k]);
        } else {
          for (int k = 1; k < P; ++k) {
            rotate<Inverse>(a[k], wj[k - 1]);
            store(t + s * (P * j + k), a[k]);
          }
        }
      }
    }
  }

  Index m_ = 1;
  std::vector<int> radices_;
  std::vector<std::vector<std::complex<T>>> twiddles_;
};

}  // namespace peft::fft::detail
