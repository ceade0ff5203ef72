#pragma once
// A frozen layer Y = X·Wᵀ + b whose W is stored in bfloat16: half the memory
// of a float32 layer (a 4096 x 4096 weight: 32 MiB instead of 64). Activations,
// gradients and the bias stay float32, so every adapter runs on top unchanged.
//
// Products, chosen at compile time:
// - portable (the default): exact float32 products of the rounded weights. W
//   is widened one panel at a time (core/widened_panels.hpp) and multiplied
//   by the configured GEMM backend.
//   Rounding W is the only error against the float32 layer: at most 2^-8
//   (0.39%) relative per weight (normal numbers; subnormals lose more).
//   Speed: that of the float32 GEMM.
// - oneDNN (PEFT_WITH_ONEDNN, target peft::onednn): X (forward) and dY
//   (backward) are rounded to bfloat16 as well and multiplied by oneDNN's
//   bfloat16 matmul with float32 accumulation, as PyTorch's bfloat16 layers
//   do: about twice the float32 rate on CPUs with avx512_bf16. The layer says
//   which with LinearBF16::kRoundsActivations.

#include <algorithm>
#include <ranges>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <peft/core/bfloat16.hpp>
#include <peft/core/error.hpp>
#include <peft/core/frozen_layer.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/types.hpp>
#include <peft/core/widened_panels.hpp>
#if defined(PEFT_WITH_ONEDNN)
#include <peft/core/onednn_matmul.hpp>
#endif

namespace peft {
// Each product path is its own type, so translation units built with and
// without PEFT_WITH_ONEDNN never share one definition of it (no ODR
// violation); a LinearBF16 of one build is a different type in the other.
#if defined(PEFT_WITH_ONEDNN)
inline namespace bf16_onednn {
#else
inline namespace bf16_portable {
#endif

/// A frozen float32 layer with its weight held in bfloat16 (see the file's
/// comment). Same frozen-layer interface as Linear<float>; W is read through
/// dequantised() and rewritten through assign_rounded(), not a writable matrix.
class LinearBF16 {
 public:
  using Scalar = float;  ///< the element type of activations, gradients and bias
  /// Whether the products round X and dY to bfloat16 too (the oneDNN path) or
  /// are exact float32 products of the rounded weights (the portable path).
#if defined(PEFT_WITH_ONEDNN)
  static constexpr bool kRoundsActivations = true;
#else
  static constexpr bool kRoundsActivations = false;
#endif

  /// Rounds a float32 weight (d_out x d_in) to bfloat16, ties to even.
  explicit LinearBF16(const Matrix<float>& weight, Vector<float> bias = {})
      : d_out_(weight.rows()), d_in_(weight.cols()), bias_(std::move(bias)) {
    check_shapes("LinearBF16");
    bits_.resize(static_cast<std::size_t>(d_out_ * d_in_));
    assign_rounded(weight);
  }
  /// The float32 layer's weight rounded to bfloat16; the bias is kept as is.
  explicit LinearBF16(const Linear<float>& layer) : LinearBF16(layer.weight(), layer.bias()) {}

  /// A weight already in bfloat16: `bits` holds d_out x d_in bit patterns in
  /// row-major order (PyTorch's layout, as in a BF16 safetensors tensor).
  LinearBF16(std::vector<std::uint16_t> bits, Index d_out, Index d_in, Vector<float> bias = {})
      : d_out_(d_out), d_in_(d_in), bits_(std::move(bits)), bias_(std::move(bias)) {
    check_shapes("LinearBF16");
    PEFT_REQUIRE(static_cast<Index>(bits_.size()) == d_out_ * d_in_, "LinearBF16: bits must hold d_out x d_in = ",
                 d_out_ * d_in_, " values, got ", bits_.size());
  }

  Index in_features() const { return d_in_; }          ///< d_in, the columns of W
  Index out_features() const { return d_out_; }        ///< d_out, the rows of W
  bool has_bias() const { return bias_.size() != 0; }  ///< whether b has d_out entries (not empty)

  /// b (d_out, or empty), float32. Writable: a trained base bias is this vector.
  ///@{
  Vector<float>& bias() { return bias_; }
  const Vector<float>& bias() const { return bias_; }
  ///@}
  /// W's bfloat16 bit patterns, d_out x d_in row-major.
  const std::vector<std::uint16_t>& weight_bits() const { return bits_; }
  /// Bytes held by W (2 per weight).
  std::size_t weight_bytes() const { return bits_.size() * sizeof(std::uint16_t); }

  /// W widened to float32 (exact), d_out x d_in.
  Matrix<float> weight() const {
    Matrix<float> w(d_out_, d_in_);
    widen(bits_.data(), w.data(), bits_.size());
    return w;
  }
  /// Whether W holds no NaN or Inf.
  bool all_finite() const {
    return std::ranges::all_of(bits_, [](std::uint16_t b) { return (b & 0x7f80u) != 0x7f80u; });
  }
  /// The float32 layer this one computes exactly: weight() and bias().
  Linear<float> dequantised() const { return Linear<float>(weight(), bias_); }

  /// Replaces W by `weight` rounded to bfloat16 (as merge does: dequantise,
  /// add, round again) and returns how far rounding moved it.
  RoundingError assign_rounded(const Matrix<float>& weight) {
    PEFT_REQUIRE(weight.rows() == d_out_ && weight.cols() == d_in_, "LinearBF16::assign_rounded: weight must be ",
                 detail::shape_str(d_out_, d_in_), " (d_out x d_in), got ",
                 detail::shape_str(weight.rows(), weight.cols()));
    RoundingError error;
    const float* w = weight.data();
    for (std::size_t i = 0; i < bits_.size(); ++i) {
      bits_[i] = float_to_bf16(w[i]);
      if (!std::isfinite(w[i])) continue;  // a non-finite weight stays as it is: no rounding to report
      // A finite weight past bfloat16's largest becomes inf: reported as an infinite change.
      const double exact = w[i], moved = std::abs(static_cast<double>(bf16_to_float(bits_[i])) - exact);
      error.max_abs = std::max(error.max_abs, moved);
      if (exact != 0) error.max_rel = std::max(error.max_rel, moved / std::abs(exact));
    }
    return error;
  }

  /// Y = X·Wᵀ + b into `Y` (resized; no allocation once Y and this thread's
  /// panel buffer fit).
  void forward(const ConstMatrixRef<float>& X, Matrix<float>& Y) const {
    PEFT_REQUIRE(X.cols() == d_in_, "LinearBF16::forward: X must have in_features = ", d_in_, " columns, got ",
                 detail::shape_str(X.rows(), X.cols()));
#if defined(PEFT_WITH_ONEDNN)
    detail::onednn::bf16_matmul(X, bits_.data(), d_out_, /*b_transposed=*/true, Y);
#else
    detail::forward_by_panels(
        X, d_out_, d_in_,
        [&](Index r, Index n, float* out) { widen(bits_.data() + r * d_in_, out, static_cast<std::size_t>(n * d_in_)); },
        Y);
#endif
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
    PEFT_REQUIRE(dY.cols() == d_out_, "LinearBF16::backward: dY must have out_features = ", d_out_,
                 " columns, got ", detail::shape_str(dY.rows(), dY.cols()));
#if defined(PEFT_WITH_ONEDNN)
    detail::onednn::bf16_matmul(dY, bits_.data(), d_in_, /*b_transposed=*/false, dX);
#else
    detail::backward_by_panels(
        dY, d_out_, d_in_,
        [&](Index c, Index n, float* out) {
          for (Index row = 0; row < d_out_; ++row)
            widen(bits_.data() + row * d_in_ + c, out + row * n, static_cast<std::size_t>(n));
        },
        dX);
#endif
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
  /// bfloat16 -> float32 for n contiguous values (a loop the compiler vectorises).
  static void widen(const std::uint16_t* bits, float* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_float(bits[i]);
  }

  void check_shapes(const char* who) const {
    PEFT_REQUIRE(d_out_ > 0 && d_in_ > 0, who, ": weight must be non-empty (d_out x d_in), got ",
                 detail::shape_str(d_out_, d_in_));
    PEFT_REQUIRE(bias_.size() == 0 || bias_.size() == d_out_, who, ": bias must have 0 or d_out = ", d_out_,
                 " entries, got ", bias_.size());
  }

  Index d_out_ = 0, d_in_ = 0;
  std::vector<std::uint16_t> bits_;  // W, d_out x d_in row-major
  Vector<float> bias_;
};

}  // inline namespace bf16_onednn / bf16_portable
}  // namespace peft
