#pragma once
// The frozen layer every adapter wraps: Y = X·Wᵀ + b, W: d_out x d_in.
//
// Its two products run on Eigen's GEMM (or the BLAS under EIGEN_USE_BLAS,
// target peft::blas); with target peft::onednn (PEFT_WITH_ONEDNN),
// Linear<float>'s run on oneDNN's float32 matmul instead, the fastest here
// (docs/performance.md). Build every file of one program with the same
// backend targets: the layer's code differs between them.

#include <type_traits>
#include <utility>

#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/types.hpp>

#if defined(PEFT_WITH_ONEDNN)
#include <peft/core/onednn_matmul.hpp>
#endif

namespace peft {

/// A frozen dense layer Y = X·Wᵀ + b, W: d_out x d_in (PyTorch layout), b: d_out or empty.
template <class T>
class Linear {
 public:
  using Scalar = T;  ///< element type (float or double)

  /// `bias` may be empty (no bias); otherwise it has d_out entries.
  explicit Linear(Matrix<T> weight, Vector<T> bias = {}) : weight_(std::move(weight)), bias_(std::move(bias)) {
    PEFT_REQUIRE(weight_.rows() > 0 && weight_.cols() > 0, "Linear: weight must be non-empty (d_out x d_in), got ",
                 detail::shape_str(weight_.rows(), weight_.cols()));
    PEFT_REQUIRE(bias_.size() == 0 || bias_.size() == weight_.rows(), "Linear: bias must have 0 or d_out = ",
                 weight_.rows(), " entries, got ", bias_.size());
  }

  /// A layer initialised like torch.nn.Linear: W and b ~ U(+-1/sqrt(d_in)).
  static Linear random(Index d_in, Index d_out, Rng& rng, bool bias = true) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "Linear::random: sizes must be positive, got d_in = ", d_in,
                 ", d_out = ", d_out);
    Matrix<T> w(d_out, d_in);
    Vector<T> b(bias ? d_out : 0);
    init::kaiming_uniform(w, d_in, std::sqrt(5.0), rng);
    init::uniform(b, 1.0 / std::sqrt(static_cast<double>(d_in)), rng);
    return Linear(std::move(w), std::move(b));
  }

  Index in_features() const { return weight_.cols(); }   ///< d_in, the columns of W
  Index out_features() const { return weight_.rows(); }  ///< d_out, the rows of W
  bool has_bias() const { return bias_.size() != 0; }    ///< whether b has d_out entries (not empty)

  /// W (d_out x d_in) and b (d_out, or empty). Writable so that adapters can
  /// merge into the frozen weights.
  ///@{
  Matrix<T>& weight() { return weight_; }
  Vector<T>& bias() { return bias_; }
  const Matrix<T>& weight() const { return weight_; }
  const Vector<T>& bias() const { return bias_; }
  ///@}

  /// Y = X·Wᵀ + b into `Y` (resized; no allocation when it already fits).
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    PEFT_REQUIRE(X.cols() == in_features(), "Linear::forward: X must have in_features = ", in_features(),
                 " columns, got ", detail::shape_str(X.rows(), X.cols()));
    // bias() is writable: a caller may have resized it since construction.
    PEFT_REQUIRE(bias_.size() == 0 || bias_.size() == out_features(), "Linear::forward: bias must have 0 or d_out = ",
                 out_features(), " entries, got ", bias_.size());
#if defined(PEFT_WITH_ONEDNN)
    if constexpr (std::is_same_v<T, float>) {
      detail::onednn::f32_matmul("Linear::forward", X, weight_.data(), out_features(), /*b_transposed=*/true,
                                 has_bias() ? bias_.data() : nullptr, Y);
      return;
    }
#endif
    Y.resize(X.rows(), out_features());
    Y.noalias() = X * weight_.transpose();
    if (has_bias()) Y.rowwise() += bias_.transpose();
  }
  /// Y = X·Wᵀ + b, returned (N x d_out). Throws peft::Error unless X has d_in columns.
  Matrix<T> forward(const ConstMatrixRef<T>& X) const {
    Matrix<T> Y;
    forward(X, Y);
    return Y;
  }

  /// dX = dY·W (the layer is frozen: no parameter gradients).
  void backward(const ConstMatrixRef<T>& dY, Matrix<T>& dX) const {
    PEFT_REQUIRE(dY.cols() == out_features(), "Linear::backward: dY must have out_features = ", out_features(),
                 " columns, got ", detail::shape_str(dY.rows(), dY.cols()));
#if defined(PEFT_WITH_ONEDNN)
    if constexpr (std::is_same_v<T, float>) {
      detail::onednn::f32_matmul("Linear::backward", dY, weight_.data(), in_features(), /*b_transposed=*/false,
                                 nullptr, dX);
      return;
    }
#endif
    dX.resize(dY.rows(), in_features());
    dX.noalias() = dY * weight_;
  }
  /// dX = dY·W, returned (N x d_in). Throws peft::Error unless dY has d_out columns.
  Matrix<T> backward(const ConstMatrixRef<T>& dY) const {
    Matrix<T> dX;
    backward(dY, dX);
    return dX;
  }

  /// Matrix-product flops of forward + backward (dX) for N rows.
  double flops(Index N) const {
    return 4.0 * static_cast<double>(N) * static_cast<double>(in_features()) * static_cast<double>(out_features());
  }

 private:
  Matrix<T> weight_;
  Vector<T> bias_;
};

}  // namespace peft
