#pragma once
// Products with a Kronecker product W1 ⊗ W2 without forming it.
// W1: p_out x p_in, W2: q_out x q_in, so W1 ⊗ W2 is (p_out·q_out) x (p_in·q_in).
// A row x reshaped row-major to X_m (p_in x q_in) maps to
//   (W1 ⊗ W2)·x = W1·X_m·W2ᵀ   (p_out x q_out, read row-major).
// All rows at once: U = X_stack·W2ᵀ with X_stack the (N·p_in) x q_in view of X
// (one GEMM), then W1·U_n for every row n as one GEMM W1·Ũ, where Ũ
// (p_in x N·q_out) lays the U_n side by side. Backward, with G_m the reshaped
// gradient row and P_n = W1ᵀ·G_m (one GEMM W1ᵀ·G̃ the same way):
//   dX_m = P_n·W2 (one GEMM over the stack),  dW2 = Σ P_nᵀ·X_m (one GEMM),
//   dW1 = Σ G_m·U_nᵀ = G̃·Ũᵀ (one GEMM).
// Per-row products (p x p times p x q, ~10⁴ flops each) would cost a GEMM
// call's overhead per row: for MiniLM's 384 = 16·24 and 1024 rows, the side
// by side layout makes 3 calls of 1024 into one each.

#include <algorithm>

#include <peft/core/error.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>

namespace peft::structured {

/// Products with W1 ⊗ W2 (W1: p_out x p_in, W2: q_out x q_in) and their gradients,
/// without forming it; the factors are arguments of each forward.
template <class T>
class Kronecker {
 public:
  Kronecker() : Kronecker(1, 1, 1, 1) {}
  /// Throws peft::Error unless every factor dimension is >= 1.
  Kronecker(Index p_out, Index p_in, Index q_out, Index q_in) : p_out_(p_out), p_in_(p_in), q_out_(q_out), q_in_(q_in) {
    PEFT_REQUIRE(p_out >= 1 && p_in >= 1 && q_out >= 1 && q_in >= 1, "Kronecker: factor shapes must be positive, got ",
                 p_out, " x ", p_in, " and ", q_out, " x ", q_in);
  }

  Index rows() const { return p_out_ * q_out_; }  ///< p_out·q_out, the product's rows
  Index cols() const { return p_in_ * q_in_; }    ///< p_in·q_in, the product's columns

  /// Y = scale·rows (W1 ⊗ W2)·x of X (Y resized to N x rows()). Keeps X, the
  /// factors and U for backward.
  void forward(const ConstMatrixRef<T>& W1, const ConstMatrixRef<T>& W2, T scale, const ConstMatrixRef<T>& X,
               Matrix<T>& Y) {
    PEFT_REQUIRE(W1.rows() == p_out_ && W1.cols() == p_in_ && W2.rows() == q_out_ && W2.cols() == q_in_,
                 "Kronecker::forward: factors must be ", ::peft::detail::shape_str(p_out_, p_in_), " and ",
                 ::peft::detail::shape_str(q_out_, q_in_), ", got ", ::peft::detail::shape_str(W1.rows(), W1.cols()),
                 " and ", ::peft::detail::shape_str(W2.rows(), W2.cols()));
    PEFT_REQUIRE(X.cols() == cols(), "Kronecker::forward: X must have ", cols(), " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    const Index N = X.rows();
    w2_ = W2;
    scale_ = scale;
    x_ = X;
    u_.noalias() = ConstMatrixMap<T>(x_.data(), N * p_in_, q_in_) * w2_.transpose();
    side_by_side(u_.data(), N, p_in_, q_out_, u_side_);
    w1_scaled_ = scale * W1;  // all backward needs of W1
    y_side_.noalias() = w1_scaled_ * u_side_;
    Y.resize(N, rows());
    stack_rows(y_side_, N, p_out_, q_out_, Y.data(), /*add=*/false);
  }

  /// Y (N x rows()) += scale·rows (W1 ⊗ W2)·x of X, keeping nothing: the
  /// const path for inference, safe on several threads at once (its working
  /// memory is the calling thread's).
  void apply(const ConstMatrixRef<T>& W1, const ConstMatrixRef<T>& W2, T scale, const ConstMatrixRef<T>& X,
             Matrix<T>& Y) const {
    PEFT_REQUIRE(W1.rows() == p_out_ && W1.cols() == p_in_ && W2.rows() == q_out_ && W2.cols() == q_in_,
                 "Kronecker::apply: factors must be ", ::peft::detail::shape_str(p_out_, p_in_), " and ",
                 ::peft::detail::shape_str(q_out_, q_in_), ", got ", ::peft::detail::shape_str(W1.rows(), W1.cols()),
                 " and ", ::peft::detail::shape_str(W2.rows(), W2.cols()));
    PEFT_REQUIRE(X.cols() == cols() && Y.rows() == X.rows() && Y.cols() == rows(), "Kronecker::apply: expected X with ",
                 cols(), " columns and Y of ", ::peft::detail::shape_str(X.rows(), rows()), ", got X ",
                 ::peft::detail::shape_str(X.rows(), X.cols()), ", Y ", ::peft::detail::shape_str(Y.rows(), Y.cols()));
    const Index N = X.rows();
    const T* x = X.data();
    if (X.outerStride() != X.cols()) {  // the reshape below needs rows back to back
      Matrix<T>& packed = thread_matrix<Kronecker, T, 0>(N, cols());
      packed = X;
      x = packed.data();
    }
    Matrix<T>& u = thread_matrix<Kronecker, T, 1>(N * p_in_, q_out_);
    u.noalias() = ConstMatrixMap<T>(x, N * p_in_, q_in_) * W2.transpose();
    Matrix<T>& u_side = thread_matrix<Kronecker, T, 2>(p_in_, N * q_out_);
    side_by_side(u.data(), N, p_in_, q_out_, u_side);
    Matrix<T>& y_side = thread_matrix<Kronecker, T, 3>(p_out_, N * q_out_);
    y_side.noalias() = (scale * W1) * u_side;
    stack_rows(y_side, N, p_out_, q_out_, Y.data(), /*add=*/true);
  }

  /// dX += scale·rows (W1 ⊗ W2)ᵀ·g of G; dW1, dW2 = the factors' gradients
  /// (overwritten), for the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, Matrix<T>& dW1, Matrix<T>& dW2) {
    PEFT_REQUIRE(G.rows() * p_in_ == u_.rows() && G.cols() == rows(), "Kronecker::backward: G must be ",
                 ::peft::detail::shape_str(u_.rows() / p_in_, rows()), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    const Index N = G.rows();
    const T* g = G.data();
    if (G.outerStride() != G.cols()) {  // the layout below reads rows back to back
      g_packed_ = G;
      g = g_packed_.data();
    }
    side_by_side(g, N, p_out_, q_out_, g_side_);
    dW1.noalias() = scale_ * (g_side_ * u_side_.transpose());
    p_side_.noalias() = w1_scaled_.transpose() * g_side_;
    p_.resize(N * p_in_, q_out_);
    stack_rows(p_side_, N, p_in_, q_out_, p_.data(), /*add=*/false);
    dW2.noalias() = p_.transpose() * ConstMatrixMap<T>(x_.data(), N * p_in_, q_in_);
    MatrixMap<T>(dX.data(), N * p_in_, q_in_).noalias() += p_ * w2_;
  }

 private:
  // side (a x N·c) = the a x c blocks that rows 0..N-1 of m (N x a·c, back
  // to back) hold, side by side: side(k, n·c + j) = m(n, k·c + j).
  static void side_by_side(const T* m, Index N, Index a, Index c, Matrix<T>& side) {
    side.resize(a, N * c);
    for (Index n = 0; n < N; ++n)
      for (Index k = 0; k < a; ++k)
        std::copy_n(m + (n * a + k) * c, c, side.data() + k * N * c + n * c);
  }
  // The inverse: rows of out (N x a·c, back to back) = (or +=) the blocks of side.
  static void stack_rows(const Matrix<T>& side, Index N, Index a, Index c, T* out, bool add) {
    for (Index n = 0; n < N; ++n)
      for (Index k = 0; k < a; ++k) {
        const T* from = side.data() + k * N * c + n * c;
        T* to = out + (n * a + k) * c;
        if (add) Eigen::Map<Vector<T>>(to, c) += Eigen::Map<const Vector<T>>(from, c);
        else std::copy_n(from, c, to);
      }
  }

  Index p_out_, p_in_, q_out_, q_in_;
  T scale_{1};
  // Kept across calls: no allocation once shapes settle.
  Matrix<T> w1_scaled_, w2_, x_, u_, u_side_, y_side_, g_packed_, g_side_, p_side_, p_;
};

/// The dense Kronecker product a ⊗ b, the oracle for tests and merging.
template <class T>
Matrix<T> kronecker_dense(const Matrix<T>& a, const Matrix<T>& b) {
  Matrix<T> k(a.rows() * b.rows(), a.cols() * b.cols());
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) k.block(i * b.rows(), j * b.cols(), b.rows(), b.cols()) = a(i, j) * b;
  return k;
}

}  // namespace peft::structured
