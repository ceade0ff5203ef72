#pragma once
// Opt-in backend: FFTW's batched r2c/c2r plans (fftw_plan_many_dft_*), called
// directly (Eigen's FFTW wrapper caches plans by length only and can reuse a
// complex plan for a real transform). FFTW is GPL: this header is only usable
// when the build defines PEFT_WITH_FFTW and links libfftw3/libfftw3f.
// Plans are made once per (rows, strides, alignment) with FFTW_MEASURE and
// kept in this object. FFTW's planner is not thread-safe: plan on one thread.

#ifndef PEFT_WITH_FFTW
#error "peft/fft/fftw.hpp needs PEFT_WITH_FFTW (CMake option PEFT_WITH_FFTW, GPL)"
#endif

#include <complex>
#include <map>
#include <tuple>
#include <type_traits>
#include <vector>

#include <fftw3.h>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace peft::fft {

namespace detail {

/// The float and double halves of FFTW's API behind one name.
template <class T>
struct Fftw;

template <>
struct Fftw<double> {
  using plan = fftw_plan;
  using complex = fftw_complex;
  static void* malloc(std::size_t n) { return fftw_malloc(n); }
  static void free(void* p) { fftw_free(p); }
  static int alignment_of(double* p) { return fftw_alignment_of(p); }
  static plan r2c(int n, int rows, double* in, int is, fftw_complex* out, int os, unsigned flags) {
    return fftw_plan_many_dft_r2c(1, &n, rows, in, nullptr, 1, is, out, nullptr, 1, os, flags);
  }
  static plan c2r(int n, int rows, fftw_complex* in, int is, double* out, int os, unsigned flags) {
    return fftw_plan_many_dft_c2r(1, &n, rows, in, nullptr, 1, is, out, nullptr, 1, os, flags);
  }
  static void run_r2c(plan p, double* in, fftw_complex* out) { fftw_execute_dft_r2c(p, in, out); }
  static void run_c2r(plan p, fftw_complex* in, double* out) { fftw_execute_dft_c2r(p, in, out); }
  static void destroy(plan p) { fftw_destroy_plan(p); }
};

template <>
struct Fftw<float> {
  using plan = fftwf_plan;
  using complex = fftwf_complex;
  static void* malloc(std::size_t n) { return fftwf_malloc(n); }
  static void free(void* p) { fftwf_free(p); }
  static int alignment_of(float* p) { return fftwf_alignment_of(p); }
  static plan r2c(int n, int rows, float* in, int is, fftwf_complex* out, int os, unsigned flags) {
    return fftwf_plan_many_dft_r2c(1, &n, rows, in, nullptr, 1, is, out, nullptr, 1, os, flags);
  }
  static plan c2r(int n, int rows, fftwf_complex* in, int is, float* out, int os, unsigned flags) {
    return fftwf_plan_many_dft_c2r(1, &n, rows, in, nullptr, 1, is, out, nullptr, 1, os, flags);
  }
  static void run_r2c(plan p, float* in, fftwf_complex* out) { fftwf_execute_dft_r2c(p, in, out); }
  static void run_c2r(plan p, fftwf_complex* in, float* out) { fftwf_execute_dft_c2r(p, in, out); }
  static void destroy(plan p) { fftwf_destroy_plan(p); }
};

}  // namespace detail

/// The FFTW real-FFT plan (opt-in, GPL: needs PEFT_WITH_FFTW); the interface of
/// every backend is described in fft.hpp. Move-only; plan on one thread.
template <class T>
class FFTWPlan {
  using API = detail::Fftw<T>;

 public:
  using Scalar = T;                            ///< real type, float or double
  using Complex = std::complex<T>;             ///< spectrum element
  static constexpr const char* name = "fftw";  ///< the backend's name, for benchmarks and messages

  /// A plan for length n; FFTW's plans (made with `flags`) come on first use of each
  /// batch layout. Throws peft::Error unless n >= 1.
  explicit FFTWPlan(Index n, unsigned flags = FFTW_MEASURE) : n_(n), flags_(flags) {
    PEFT_REQUIRE(n >= 1, "FFTWPlan: length must be >= 1, got ", n);
  }
  FFTWPlan(const FFTWPlan&) = delete;
  FFTWPlan& operator=(const FFTWPlan&) = delete;
  /// Takes over other's FFTW plans.
  FFTWPlan(FFTWPlan&& other) noexcept : n_(other.n_), flags_(other.flags_), plans_(std::move(other.plans_)) {
    other.plans_.clear();
  }
  ~FFTWPlan() {
    for (auto& entry : plans_) API::destroy(entry.second);
  }

  Index size() const { return n_; }          ///< n, the transform length
  Index bins() const { return n_ / 2 + 1; }  ///< n/2 + 1, the half spectrum's length

  /// out[r] = the unscaled half spectrum of in[r], for `rows` rows (strides in elements).
  void forward(const T* in, Index in_stride, Complex* out, Index out_stride, Index rows) {
    if (rows == 0) return;
    auto* src = const_cast<T*>(in);  // FFTW's r2c does not write its input (not FFTW_DESTROY_INPUT)
    auto* dst = reinterpret_cast<typename API::complex*>(out);
    API::run_r2c(plan_for(true, rows, in_stride, out_stride, API::alignment_of(src), API::alignment_of(reinterpret_cast<T*>(out))),
                 src, dst);
  }

  /// With `accumulate`, out += the scaled inverse (transformed into a scratch block first).
  void inverse(const Complex* in, Index in_stride, T* out, Index out_stride, Index rows, T scale,
               bool accumulate = false) {
    if (rows == 0) return;
    if (accumulate) {
      sum_.resize(static_cast<std::size_t>(rows * n_));
      inverse(in, in_stride, sum_.data(), n_, rows, scale, false);
      for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < n_; ++j) out[r * out_stride + j] += sum_[static_cast<std::size_t>(r * n_ + j)];
      return;
    }
    // c2r overwrites its input, so transform a copy.
    spectrum_.resize(static_cast<std::size_t>(rows * bins()));
    for (Index r = 0; r < rows; ++r)
      for (Index k = 0; k < bins(); ++k) spectrum_[static_cast<std::size_t>(r * bins() + k)] = in[r * in_stride + k];
    auto* src = reinterpret_cast<typename API::complex*>(spectrum_.data());
    API::run_c2r(plan_for(false, rows, bins(), out_stride, API::alignment_of(reinterpret_cast<T*>(spectrum_.data())),
                          API::alignment_of(out)),
                 src, out);
    for (Index r = 0; r < rows; ++r)
      for (Index j = 0; j < n_; ++j) out[r * out_stride + j] *= scale;
  }

 private:
  using Key = std::tuple<bool, Index, Index, Index, int, int>;

  typename API::plan plan_for(bool forward, Index rows, Index in_stride, Index out_stride, int in_align, int out_align) {
    const Key key{forward, rows, in_stride, out_stride, in_align, out_align};
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    // Plan on scratch arrays (FFTW_MEASURE overwrites them), with the same
    // alignment as the caller's data, or unaligned plans when it differs.
    const unsigned flags = flags_ | (in_align == 0 && out_align == 0 ? 0u : unsigned(FFTW_UNALIGNED));
    const std::size_t real_count = static_cast<std::size_t>(rows * (forward ? in_stride : out_stride));
    const std::size_t complex_count = static_cast<std::size_t>(rows * (forward ? out_stride : in_stride));
    T* real = static_cast<T*>(API::malloc(sizeof(T) * real_count));
    auto* cplx = static_cast<typename API::complex*>(API::malloc(sizeof(T) * 2 * complex_count));
    const int n = static_cast<int>(n_);
    const auto plan = forward ? API::r2c(n, static_cast<int>(rows), real, static_cast<int>(in_stride), cplx,
                                         static_cast<int>(out_stride), flags)
                              : API::c2r(n, static_cast<int>(rows), cplx, static_cast<int>(in_stride), real,
                                         static_cast<int>(out_stride), flags);
    API::free(real);
    API::free(cplx);
    PEFT_REQUIRE(plan != nullptr, "FFTWPlan: FFTW could not plan a length-", n_, " transform of ", rows, " rows");
    plans_.emplace(key, plan);
    return plan;
  }

  Index n_;
  unsigned flags_;
  std::map<Key, typename API::plan> plans_;
  std::vector<Complex> spectrum_;
  std::vector<T> sum_;  // accumulate's scratch
};

}  // namespace peft::fft
