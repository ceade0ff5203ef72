#pragma once
// Toeplitz products through a circulant embedding, O((m + n) log(m + n)) per row.
//   T(t) ∈ R^{m×n},  T[i][j] = t[i − j + n − 1],  t: m + n − 1 entries
// (t[0] is the top-right corner, t[n − 1] the diagonal, t[m + n − 2] the
// bottom-left). With L ≥ m + n − 1 (rounded up to an FFT-friendly length) and
// x zero-padded to L:
//   forward   y = irfft_L(t̂ ⊙ x̂)[n − 1 : n − 1 + m]
//   input     dx = irfft_L(conj(t̂) ⊙ û)[0 : n],  u = g placed at n − 1
//   kernel    dt = irfft_L(Σ_rows conj(x̂) ⊙ û)[0 : m + n − 1]
// No index wraps around: the embedding makes the circular products linear.
// A square one of even, FFT-friendly n is split instead into a circulant and a
// skew-circulant part, T = Circ(c) + Skew(s), with a_k = t[k + n − 1]:
//   c_k = (a_k + a_{k−n})/2,  s_k = (a_k − a_{k−n})/2,  k < n  (a_{−n} = 0)
// which is four length-n transforms each way (no padding) instead of two of
// length 2n plus the padded copies.
// Symmetric Toeplitz T(v)[i][j] = v[|i − j|] is the case t = [v_{n−1}..v_1, v_0, v_1..v_{n−1}].

#include <algorithm>
#include <optional>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/structured/circulant_plus_skew.hpp>
#include <peft/structured/correlation.hpp>
#include <peft/structured/spectral.hpp>
#include <peft/fft/stockham.hpp>

namespace peft::structured {

/// The dense m x n matrix T(t), the oracle for tests.
template <class T>
Matrix<T> toeplitz_dense(const Eigen::Ref<const Vector<T>>& t, Index m, Index n) {
  PEFT_REQUIRE(t.size() == m + n - 1, "toeplitz_dense: t must have m + n - 1 = ", m + n - 1, " entries, got ", t.size());
  Matrix<T> M(m, n);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) M(i, j) = t[i - j + n - 1];
  return M;
}

/// The smallest length ≥ n whose prime factors are 2, 3 and 5 (fast Stockham lengths).
inline Index smooth_length(Index n) {
  for (Index L = std::max<Index>(n, 1);; ++L)
    if (L == 1 || !fft::detail::stockham_radices(L).empty()) return L;
}

/// T(t)·x for every row x of X (T(t)[i][j] = t[i − j + n − 1], m x n), with its
/// transpose and kernel gradient, through a circulant embedding.
template <class T, class Plan = fft::RealFFT<T>>
class Toeplitz {
 public:
  /// An m x n Toeplitz operator (m outputs, n inputs); throws peft::Error unless m, n >= 1.
  Toeplitz(Index m, Index n) : m_(m), n_(n), L_(checked_length(m, n)) {
    if (m == n && n % 2 == 0 && smooth_length(n) == n) {
      split_.emplace(n);
      return;
    }
    plan_.emplace(L_);
    t_hat_.resize(bins());
    pad_.setZero(1, L_);
  }

  Index rows() const { return m_; }                 ///< m, the outputs
  Index cols() const { return n_; }                 ///< n, the inputs
  Index num_params() const { return m_ + n_ - 1; }  ///< m + n − 1, the kernel's length

  /// Sets t (m + n − 1 entries) and computes its spectrum once.
  void set_kernel(const T* t) {
    if (split_) {
      const Index n = n_;
      parts_.resize(2, n);  // row 0: c, row 1: s (the kernel [c; s])
      for (Index k = 0; k < n; ++k) {
        const T a = t[k + n - 1], wrapped = k == 0 ? T(0) : t[k - 1];
        parts_(0, k) = (a + wrapped) / 2;
        parts_(1, k) = (a - wrapped) / 2;
      }
      split_->set_kernel(parts_.data());
      return;
    }
    pad_.setZero(1, L_);
    std::copy(t, t + num_params(), pad_.data());
    plan_->forward(pad_.data(), L_, t_hat_.data(), bins(), 1);
  }

  /// Y (N x m) = scale · rows T(t)·x of X (N x n); with `accumulate`, Y
  /// (N x m) += that instead.
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<true>(X, Y, scale, accumulate);
  }

  /// forward keeping nothing for backward: the inference path, on a product
  /// the calling thread owns. Backward needs a new forward.
  void apply(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<false>(X, Y, scale, accumulate);
  }

  /// dX (N x n) = scale · rows T(t)ᵀ·g of G (N x m) (or += with
  /// `accumulate`); dt (m + n − 1 entries) += scale · its gradient, with x
  /// from the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dt, T scale = T(1), bool accumulate = false) {
    PEFT_REQUIRE(G.cols() == m_ && G.rows() == forward_rows_, "Toeplitz::backward: G must be ",
                 ::peft::detail::shape_str(forward_rows_, m_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    if (split_) return split_backward(G, dX, dt, scale, accumulate);
    zero_padded(padded_g_, G.rows()).middleCols(n_ - 1, m_) = G;
    fft::forward(*plan_, padded_g_, g_hat_);
    if (dt != nullptr) detail::add_correlation(*plan_, x_hat_, g_hat_, dt, num_params(), correlation_, scale);
    detail::inverse_of_product<true>(*plan_, g_hat_, t_hat_.data(), work_, wide_, scale / static_cast<T>(L_), false,
                                     "Toeplitz::backward");
    store(wide_.leftCols(n_), dX, accumulate, "Toeplitz::backward");
  }

 private:
  // forward; with Keep, x's spectra stay for backward (the embedding's x̂ is
  // its working buffer either way); without, backward takes no batch.
  template <bool Keep>
  void run_forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale, bool accumulate) {
    PEFT_REQUIRE(X.cols() == n_, "Toeplitz::forward: X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    forward_rows_ = Keep ? X.rows() : 0;
    if (split_) {
      if (accumulate) detail::require_accumulable(Y, X.rows(), m_, "Toeplitz::forward");
      if constexpr (Keep) split_->forward(X, Y, scale, accumulate);
      else split_->apply(X, Y, scale, accumulate);
      return;
    }
    zero_padded(padded_x_, X.rows()).leftCols(n_) = X;
    fft::forward(*plan_, padded_x_, x_hat_);
    detail::inverse_of_product<false>(*plan_, x_hat_, t_hat_.data(), work_, wide_, scale / static_cast<T>(L_), false,
                                      "Toeplitz::forward");
    store(wide_.middleCols(n_ - 1, m_), Y, accumulate, "Toeplitz::forward");
  }

  /// backward() of the split form; dt gets the chain rule through c and s.
  void split_backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dt, T scale, bool accumulate) {
    const Index n = n_;
    if (accumulate) detail::require_accumulable(dX, G.rows(), n, "Toeplitz::backward");
    if (dt != nullptr) parts_grad_.setZero(2, n);
    split_->backward(G, dX, dt != nullptr ? parts_grad_.data() : nullptr, scale, accumulate);
    if (dt == nullptr) return;
    for (Index k = 0; k < n; ++k) {
      dt[k + n - 1] += (parts_grad_(0, k) + parts_grad_(1, k)) / 2;
      if (k > 0) dt[k - 1] += (parts_grad_(0, k) - parts_grad_(1, k)) / 2;
    }
  }

  static Index checked_length(Index m, Index n) {
    PEFT_REQUIRE(m >= 1 && n >= 1, "Toeplitz: sizes must be >= 1, got m = ", m, ", n = ", n);
    return smooth_length(m + n - 1);
  }
  Index bins() const { return L_ / 2 + 1; }

  /// A rows x L buffer whose padding columns are zero. Forward and backward
  /// each keep their own and always write the same columns, so the padding
  /// is zeroed only when the row count changes.
  Matrix<T>& zero_padded(Matrix<T>& buffer, Index rows) {
    if (buffer.rows() != rows || buffer.cols() != L_) buffer.setZero(rows, L_);
    return buffer;
  }

  template <class Block>
  static void store(const Block& result, Matrix<T>& out, bool accumulate, const char* who) {
    if (!accumulate) {
      out = result;
      return;
    }
    detail::require_accumulable(out, result.rows(), result.cols(), who);
    out += result;
  }

  Index m_, n_, L_;
  Index forward_rows_ = 0;
  // The split form (square, even, FFT-friendly n): split_ set, plan_ not.
  std::optional<CirculantPlusSkew<T, Plan>> split_;
  Matrix<T> parts_, parts_grad_;  // rows c and s, and their gradients
  // The embedding (every other shape).
  std::optional<Plan> plan_;
  Eigen::Matrix<std::complex<T>, 1, Eigen::Dynamic> t_hat_;
  detail::CorrelationScratch<T> correlation_;
  Matrix<T> pad_, padded_x_, padded_g_, wide_;
  fft::ComplexMatrix<T> x_hat_, g_hat_, work_;
};

}  // namespace peft::structured
