#pragma once
// C3A, circular convolution adaptation (Chen et al., arXiv 2407.19342), as
// Hugging Face PEFT 0.21 parameterises it: c3a_kernel K of shape
// [d_out/b, d_in/b, b] (b = block_size) and
//   ΔW[i·b + t, j·b + u] = K[i, j, (u − t) mod b] / d_in,
// i.e. block (i, j) of ΔW is the first-row circulant of K[i, j, :], over d_in.
// Forward and backward never form ΔW; per frequency k of the length-b real FFT
// they are complex GEMMs (X̂_k: N x n, K̂_k: m x n, n = d_in/b, m = d_out/b):
//   Ŷ_k = X̂_k·conj(K̂_k)ᵀ,  dX̂_k = Ĝ_k·K̂_k,  Ŝ_k = conj(Ĝ_k)ᵀ·X̂_k,
// then y = irfft(Ŷ)/d_in, dx = irfft(dX̂)/d_in, dK[i, j] = irfft(Ŝ[i, j])/d_in.
// Note: PEFT 0.21's own backward conjugates Ĝ in the input gradient, so its dx
// (and the kernel gradients of every layer before the last) are wrong; this
// one is the exact gradient (checked against dense math and finite
// differences). Init as PEFT (xavier_uniform by default, so ΔW ≠ 0 at start).

#include <cmath>
#include <complex>
#include <cstdint>
#include <map>
#include <vector>

#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>

namespace peft {

/// How C3A initialises c3a_kernel (PEFT's init_weights).
enum class C3AInit {
  XavierUniform,   ///< PEFT's default "xavier_uniform" (also init_weights=False): U(±√(6/(d_in + d_out)))
  KaimingUniform,  ///< "kaiming_uniform": U(±1/√d_in)
  Gaussian,        ///< "gaussian": N(0, 1)
  Zeros,           ///< init_weights=True: ΔW = 0
};

/// C3A's hyperparameters, named as in PEFT's C3AConfig.
struct C3AConfig {
  Index block_size = 256;  ///< b, must divide d_in and d_out
  C3AInit init = C3AInit::XavierUniform;  ///< init_weights
  std::uint64_t seed = 0;                 ///< seeds the init
};

/// C3A: ΔW made of (d_out/b) x (d_in/b) circulant blocks of size b, each the
/// first-row circulant of one row of c3a_kernel [d_out/b, d_in/b, b], over d_in.
template <class T>
class C3A : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;
  using CMatrix = Eigen::Matrix<std::complex<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

 public:
  using Scalar = T;  ///< element type

  /// Throws peft::Error for non-positive sizes or a block_size that does not divide both.
  C3A(Index d_in, Index d_out, const C3AConfig& config = {})
      : d_in_(d_in), d_out_(d_out), b_(checked_block(d_in, d_out, config.block_size)), plan_(b_), config_(config) {
    n_ = d_in / b_;
    m_ = d_out / b_;
    params_.add("c3a_kernel", {m_, n_, b_});
    Rng rng(config.seed);
    switch (config.init) {
      case C3AInit::XavierUniform: init::uniform(params_.value(0), std::sqrt(6.0 / static_cast<double>(d_in + d_out)), rng); break;
      case C3AInit::KaimingUniform: init::uniform(params_.value(0), 1.0 / std::sqrt(static_cast<double>(d_in)), rng); break;
      case C3AInit::Gaussian: init::normal(params_.value(0), 1.0, rng); break;
      case C3AInit::Zeros: break;
    }
  }

  Index in_features() const { return d_in_; }          ///< d_in
  Index out_features() const { return d_out_; }        ///< d_out
  Index block_size() const { return b_; }              ///< b
  const C3AConfig& config() const { return config_; }  ///< the configuration it was built with

  /// FFTs of the blocks (≈ 2.5·b·log2 b each, forward and backward) plus the
  /// per-frequency complex GEMMs (8 real flops per complex multiply-add).
  double flops(Index N) const {
    const double rows = static_cast<double>(N), b = static_cast<double>(b_);
    const double ffts = rows * static_cast<double>(2 * n_ + 2 * m_) * 2.5 * b * std::log2(std::max(b, 2.0));
    const double gemms = 3.0 * 8.0 * rows * static_cast<double>(m_ * n_) * static_cast<double>(bins());
    return ffts + gemms;
  }

  /// ΔW[i·b + t, j·b + u] = K[i, j, (u − t) mod b] / d_in.
  Matrix<T> delta_weight() const {
    const auto K = params_.value(0);  // m x (n·b)
    const T scale = T(1) / static_cast<T>(d_in_);
    Matrix<T> dW(d_out_, d_in_);
    for (Index i = 0; i < m_; ++i)
      for (Index j = 0; j < n_; ++j)
        for (Index t = 0; t < b_; ++t)
          for (Index u = 0; u < b_; ++u) dW(i * b_ + t, j * b_ + u) = K(i, j * b_ + (u - t + b_) % b_) * scale;
    return dW;
  }

  /// Y += ΔW applied to each row of X, per frequency.
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("C3A::forward_delta", X, Y, d_in_, d_out_);
    const Index N = X.rows();
    kernel_spectra();
    fft::forward_bin_major(plan_, contiguous(X, x_), N * n_, x_f_, in_spectra_);  // kept for the kernel gradient
    y_f_.resize(bins(), N * m_);
    for (Index k = 0; k < bins(); ++k)
      at(y_f_, k, N, m_).noalias() = at(x_f_, k, N, n_) * at(k_f_, k, m_, n_).conjugate().transpose();
    // Y's rows are N·m blocks of b back to back: the inverse adds into them.
    fft::inverse_bin_major(plan_, y_f_, Y.data(), T(1) / static_cast<T>(b_ * d_in_), true, out_spectra_);
    rows_ = N;
  }

  /// Y += what forward_delta adds, keeping nothing (const: several threads may
  /// call it at once). K̂ is taken from the current kernel on every call; the
  /// plan and the spectra are the calling thread's.
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("C3A::infer_delta", X, Y, d_in_, d_out_);
    const Index N = X.rows();
    fft::RealFFT<T>& plan = thread_plan(b_);
    // As forward_delta's members, one buffer per shape: k_f, x_f, y_f and the
    // row-major scratch of plans without bin-major transforms.
    CMatrix &k_f = thread_spectra<0>(), &x_f = thread_spectra<1>(), &y_f = thread_spectra<2>();
    CMatrix &kernel_scratch = thread_spectra<3>(), &in_scratch = thread_spectra<4>(), &out_scratch = thread_spectra<5>();
    fft::forward_bin_major(plan, params_.value(0).data(), m_ * n_, k_f, kernel_scratch);
    const T* x = X.data();
    if (X.outerStride() != X.cols()) {  // the blocks of b need X's rows back to back
      Matrix<T>& packed = thread_matrix<C3A, T, 0>(N, d_in_);
      packed = X;
      x = packed.data();
    }
    fft::forward_bin_major(plan, x, N * n_, x_f, in_scratch);
    y_f.resize(bins(), N * m_);
    for (Index k = 0; k < bins(); ++k)
      at(y_f, k, N, m_).noalias() = at(x_f, k, N, n_) * at(k_f, k, m_, n_).conjugate().transpose();
    fft::inverse_bin_major(plan, y_f, Y.data(), T(1) / static_cast<T>(b_ * d_in_), true, out_scratch);
  }

  /// dX += ΔWᵀ applied to dY's rows; dK += the kernel gradient.
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(dY.rows() == rows_ && dY.cols() == d_out_, "C3A::backward_delta: dY must be ",
                 ::peft::detail::shape_str(rows_, d_out_), " (N x d_out of the last forward), got ",
                 ::peft::detail::shape_str(dY.rows(), dY.cols()));
    PEFT_REQUIRE(dX.rows() == rows_ && dX.cols() == d_in_, "C3A::backward_delta: dX must be ",
                 ::peft::detail::shape_str(rows_, d_in_), " (it is added to), got ",
                 ::peft::detail::shape_str(dX.rows(), dX.cols()));
    const Index N = dY.rows();
    fft::forward_bin_major(plan_, contiguous(dY, g_), N * m_, g_f_, out_spectra_);
    dx_f_.resize(bins(), N * n_);
    s_f_.resize(bins(), m_ * n_);
    for (Index k = 0; k < bins(); ++k) {
      const auto gk = at(g_f_, k, N, m_);
      at(dx_f_, k, N, n_).noalias() = gk * at(k_f_, k, m_, n_);          // dX̂_k, N x n
      at(s_f_, k, m_, n_).noalias() = gk.conjugate().transpose() * at(x_f_, k, N, n_);  // dK̂_k, m x n
    }
    const T scale = T(1) / static_cast<T>(b_ * d_in_);
    fft::inverse_bin_major(plan_, dx_f_, dX.data(), scale, true, in_spectra_);  // dX: N·n blocks of b
    kernel_blocks_.resize(m_ * n_, b_);
    fft::inverse_bin_major(plan_, s_f_, kernel_blocks_.data(), scale, false, kernel_spectra_);
    params_.grad(0) += Eigen::Map<const Matrix<T>>(kernel_blocks_.data(), m_, n_ * b_);
  }

 private:
  static Index checked_block(Index d_in, Index d_out, Index b) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "C3A: d_in and d_out must be positive, got d_in = ", d_in, ", d_out = ", d_out);
    PEFT_REQUIRE(b >= 1 && d_in % b == 0 && d_out % b == 0, "C3A: block_size must divide d_in = ", d_in,
                 " and d_out = ", d_out, ", got ", b);
    return b;
  }

  Index bins() const { return b_ / 2 + 1; }

  /// The calling thread's plan of length b, made on first use and kept (plans hold scratch).
  static fft::RealFFT<T>& thread_plan(Index b) {
    thread_local std::map<Index, fft::RealFFT<T>> plans;
    return plans.try_emplace(b, b).first->second;
  }

  /// The calling thread's spectra buffer number Slot for infer_delta, left to
  /// the transforms to size (thread_matrix would size the scratch our engine never uses).
  template <int Slot>
  static CMatrix& thread_spectra() {
    thread_local CMatrix spectra;
    return spectra;
  }

  /// M's data as rows·cols/b blocks of b back to back: M itself when its rows
  /// are contiguous, else a copy in `scratch`.
  static const T* contiguous(const ConstMatrixRef<T>& M, Matrix<T>& scratch) {
    if (M.outerStride() == M.cols()) return M.data();
    scratch = M;
    return scratch.data();
  }

  /// K̂ in frequency-major layout (bins x m·n), from the current kernel.
  void kernel_spectra() {
    fft::forward_bin_major(plan_, params_.value(0).data(), m_ * n_, k_f_, kernel_spectra_);
  }

  /// Bin k of a frequency-major block (bins x rows·cols) as a rows x cols matrix, in place.
  static Eigen::Map<CMatrix> at(CMatrix& f, Index k, Index rows, Index cols) {
    return Eigen::Map<CMatrix>(f.data() + k * f.cols(), rows, cols);
  }
  static Eigen::Map<const CMatrix> at(const CMatrix& f, Index k, Index rows, Index cols) {
    return Eigen::Map<const CMatrix>(f.data() + k * f.cols(), rows, cols);
  }


  Index d_in_, d_out_, b_;
  fft::RealFFT<T> plan_;
  C3AConfig config_;
  Index n_ = 1, m_ = 1, rows_ = -1;
  // Spectra frequency-major (bins x rows, for the per-bin GEMMs), and
  // row-major scratch for FFT backends without bin-major transforms; one
  // buffer per shape, so none is resized in steady state.
  CMatrix in_spectra_, out_spectra_, kernel_spectra_, k_f_, x_f_, y_f_, g_f_, dx_f_, s_f_;
  Matrix<T> x_, g_, kernel_blocks_;  // x_, g_: copies of strided inputs only
};

}  // namespace peft
