#pragma once
// A frozen layer Y = X·Wᵀ + b whose W is stored in int8 with one float32
// scale per output row (weight-only, symmetric, as QLoRA-style fine-tuning
// keeps its base): W[i, j] ≈ scale[i] · q[i, j], q in [−127, 127], scale[i] =
// max_j |W[i, j]| / 127. A 4096 x 4096 weight takes 16 MiB instead of 64.
// Activations, gradients and the bias stay float32, so every adapter that does
// not read W itself runs on top unchanged.
//
// Products: exact float32 products of the dequantised weights, W widened one
// panel at a time (core/widened_panels.hpp) and multiplied by the configured
// GEMM backend. Error against the float32 layer: at most scale[i]/2 =
// max_j |W[i, j]| / 254 per weight.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/frozen_layer.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/types.hpp>
#include <peft/core/widened_panels.hpp>

namespace peft {

/// A frozen float32 layer with its weight held in int8 and per-row scales (see
/// the file's comment). Same frozen-layer interface as Linear<float>; W is read
/// through dequantised() and rewritten through assign_rounded().
class LinearInt8 {
 public:
  using Scalar = float;  ///< the element type of activations, gradients and bias

  /// Quantises a float32 weight (d_out x d_in, all finite) row by row.
  explicit LinearInt8(const Matrix<float>& weight, Vector<float> bias = {})
      : d_out_(weight.rows()), d_in_(weight.cols()), bias_(std::move(bias)) {
    PEFT_REQUIRE(d_out_ > 0 && d_in_ > 0, "LinearInt8: weight must be non-empty (d_out x d_in), got ",
                 detail::shape_str(d_out_, d_in_));
    PEFT_REQUIRE(bias_.size() == 0 || bias_.size() == d_out_, "LinearInt8: bias must have 0 or d_out = ", d_out_,
                 " entries, got ", bias_.size());
    q_.resize(static_cast<std::size_t>(d_out_ * d_in_));
    scale_.resize(d_out_);
    assign_rounded(weight);
  }
  /// The float32 layer's weight quantised; the bias is kept as is.
  explicit LinearInt8(const Linear<float>& layer) : LinearInt8(layer.weight(), layer.bias()) {}

  Index in_features() const { return d_in_; }          ///< d_in, the columns of W
  Index out_features() const { return d_out_; }        ///< d_out, the rows of W
  bool has_bias() const { return bias_.size() != 0; }  ///< whether b has d_out entries (not empty)

  /// b (d_out, or empty), float32. Writable: a trained base bias is this vector.
  ///@{
  Vector<float>& bias() { return bias_; }
  const Vector<float>& bias() const { return bias_; }
  ///@}
  /// The int8 values q, d_out x d_in row-major.
  const std::vector<std::int8_t>& weight_int8() const { return q_; }
  /// The per-row scales (d_out): W[i, j] = scales()[i] · q[i, j].
  const Vector<float>& scales() const { return scale_; }
  /// Bytes held by W: one per weight plus 4 per row for its scale.
  std::size_t weight_bytes() const { return q_.size() + sizeof(float) * static_cast<std::size_t>(d_out_); }

  /// W dequantised to float32, d_out x d_in.
  Matrix<float> weight() const {
    Matrix<float> w(d_out_, d_in_);
    widen_rows(0, d_out_, w.data());
    return w;
  }
  /// The float32 layer this one computes exactly: weight() and bias().
  Linear<float> dequantised() const { return Linear<float>(weight(), bias_); }
  /// Whether W holds no NaN or Inf (always: assign_rounded refuses them).
  bool all_finite() const { return scale_.allFinite(); }

  /// Replaces W by `weight` quantised (as merge does: dequantise, add,
  /// quantise again) and returns how far rounding moved it. Throws
  /// peft::Error, leaving W as it was, if `weight` has the wrong shape or holds
  /// NaN or Inf (an int8 row cannot represent them).
  RoundingError assign_rounded(const Matrix<float>& weight) {
    PEFT_REQUIRE(weight.rows() == d_out_ && weight.cols() == d_in_, "LinearInt8::assign_rounded: weight must be ",
                 detail::shape_str(d_out_, d_in_), " (d_out x d_in), got ",
                 detail::shape_str(weight.rows(), weight.cols()));
    PEFT_REQUIRE(weight.allFinite(), "LinearInt8::assign_rounded: weight holds NaN or Inf; expected finite values "
                 "(int8 with a row scale cannot represent them)");
    RoundingError error;
    for (Index i = 0; i < d_out_; ++i) {
      const float* w = weight.data() + i * d_in_;
      std::int8_t* q = q_.data() + i * d_in_;
      const float top = weight.row(i).cwiseAbs().maxCoeff();
      const float scale = top / 127.0f;
      scale_(i) = scale;
      for (Index j = 0; j < d_in_; ++j) {
        // The nearest level, ties to even; the clamp only catches w / scale rounding past 127.
        const float level = scale == 0 ? 0.0f : std::clamp(std::nearbyint(w[j] / scale), -127.0f, 127.0f);
        q[j] = static_cast<std::int8_t>(level);
        const double exact = w[j], moved = std::abs(static_cast<double>(scale) * level - exact);
        error.max_abs = std::max(error.max_abs, moved);
        if (exact != 0) error.max_rel = std::max(error.max_rel, moved / std::abs(exact));
      }
    }
    return error;
  }

  /// Y = X·Wᵀ + b into `Y` (resized; no allocation once Y and this thread's
  /// panel buffer fit).
  void forward(const ConstMatrixRef<float>& X, Matrix<float>& Y) const {
    PEFT_REQUIRE(X.cols() == d_in_, "LinearInt8::forward: X must have in_features = ", d_in_, " columns, got ",
                 detail::shape_str(X.rows(), X.cols()));
    detail::forward_by_panels(
        X, d_out_, d_in_, [&](Index r, Index n, float* out) { widen_rows(r, n, out); }, Y);
    if (has_bias()) Y.rowwise() += bias_.transpose();
  }
  /// Y = X·Wᵀ + b, returned (N x d_out). Throws peft::Error unless X has d_in columns.
  Matrix<float> forward(const ConstMatrixRef<float>& X) const {
    Matrix<float> Y;
    forward(X, Y);
    return Y;
  }

  /// dX = dY·W (the layer is frozen: no parameter gradients).
  void backward(const ConstMatrixRef<float>& dY, Matrix<float>& dX) const {
    PEFT_REQUIRE(dY.cols() == d_out_, "LinearInt8::backward: dY must have out_features = ", d_out_,
                 " columns, got ", detail::shape_str(dY.rows(), dY.cols()));
    detail::backward_by_panels(
        dY, d_out_, d_in_,
        [&](Index c, Index n, float* out) {
          for (Index row = 0; row < d_out_; ++row) {
            const std::int8_t* q = q_.data() + row * d_in_ + c;
            const float scale = scale_(row);
            for (Index j = 0; j < n; ++j) out[row * n + j] = scale * static_cast<float>(q[j]);
          }
        },
        dX);
  }
  /// dX = dY·W, returned (N x d_in). Throws peft::Error unless dY has d_out columns.
  Matrix<float> backward(const ConstMatrixRef<float>& dY) const {
    Matrix<float> dX;
    backward(dY, dX);
    return dX;
  }

  /// Matrix-product flops of forward + backward (dX) for N rows.
  double flops(Index N) const {
    return 4.0 * static_cast<double>(N) * static_cast<double>(d_in_) * static_cast<double>(d_out_);
  }

 private:
  /// Rows [r, r + n) of W as float32, row-major, to out.
  void widen_rows(Index r, Index n, float* out) const {
    for (Index row = r; row < r + n; ++row) {
      const std::int8_t* q = q_.data() + row * d_in_;
      const float scale = scale_(row);
      for (Index j = 0; j < d_in_; ++j) *out++ = scale * static_cast<float>(q[j]);
    }
  }

  Index d_out_ = 0, d_in_ = 0;
  std::vector<std::int8_t> q_;  // W's levels, d_out x d_in row-major
  Vector<float> scale_;         // per row
  Vector<float> bias_;
};

}  // namespace peft
