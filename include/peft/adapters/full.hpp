#pragma once
// Full fine-tuning as an adapter: a dense trainable update of the whole layer,
//   Y = X·(W0 + ΔW)ᵀ + b0 + Δb,   ΔW = `weight` (d_out x d_in), Δb = `bias` (d_out)
// both zero at start. The baseline every PEFT method is compared with, and the
// way to train a layer from scratch (pretraining, a fresh classifier head)
// with the same forward/backward/optimizer code as the adapters. Merging adds
// ΔW and Δb into the base (which then needs a bias when Δb is trained).

#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// Full's options.
struct FullConfig {
  bool bias = true;  ///< train Δb as well as ΔW
};

/// Full fine-tuning as an adapter: Y = X·(W0 + ΔW)ᵀ + b0 + Δb with a dense
/// `weight` ΔW (d_out x d_in) and `bias` Δb (d_out), both zero at start.
template <class T>
class Full : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// ΔW and Δb start at zero; throws peft::Error for non-positive sizes.
  Full(Index d_in, Index d_out, const FullConfig& config = {}) : d_in_(d_in), d_out_(d_out), config_(config) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "Full: d_in and d_out must be positive, got d_in = ", d_in,
                 ", d_out = ", d_out);
    params_.add("weight", {d_out, d_in});
    if (config.bias) params_.add("bias", {d_out});
  }

  Index in_features() const { return d_in_; }    ///< d_in
  Index out_features() const { return d_out_; }  ///< d_out

  /// Forward GEMM, then dΔW and dX GEMMs.
  double flops(Index N) const { return 6.0 * static_cast<double>(N) * static_cast<double>(d_in_ * d_out_); }

  Matrix<T> delta_weight() const { return params_.value(kW); }  ///< ΔW (d_out x d_in), a copy

  /// W += ΔW and b += Δb; throws peft::Error if Δb is trained and the base has no bias.
  void merge_into(Linear<T>& base) const { fold_into(base, T(1)); }
  /// W −= ΔW and b −= Δb: undoes merge_into.
  void unmerge_from(Linear<T>& base) const { fold_into(base, T(-1)); }

  /// Y += X·Wᵀ (+ b) as forward_delta, keeping nothing (const: several threads may call it at once).
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("Full::infer_delta", X, Y, d_in_, d_out_);
    Y.noalias() += X * params_.value(kW).transpose();
    if (config_.bias) Y.rowwise() += params_.value(kBias).row(0);
  }

  /// Y += X·ΔWᵀ + Δb; keeps X for dΔW.
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("Full::forward_delta", X, Y, d_in_, d_out_);
    x_ = X;
    Y.noalias() += X * params_.value(kW).transpose();
    if (config_.bias) Y.rowwise() += params_.value(kBias).row(0);
  }

  /// dΔW += dYᵀ·X, dΔb += Σ_rows dY, dX += dY·ΔW.
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(dY.rows() == x_.rows() && dY.cols() == d_out_, "Full::backward_delta: dY must be ",
                 detail::shape_str(x_.rows(), d_out_), " (N x d_out of the last forward), got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    params_.grad(kW).noalias() += dY.transpose() * x_;
    if (config_.bias) params_.grad(kBias).row(0) += dY.colwise().sum();
    dX.noalias() += dY * params_.value(kW);
  }

 private:
  static constexpr Index kW = 0, kBias = 1;

  void fold_into(Linear<T>& base, T sign) const {
    if (config_.bias)
      PEFT_REQUIRE(base.has_bias(), "Full::merge: a trained bias needs a base layer with a bias; this one has none");
    base.weight() += sign * params_.value(kW);
    if (config_.bias) base.bias() += sign * params_.value(kBias).row(0).transpose();
  }

  Index d_in_, d_out_;
  FullConfig config_;
  Matrix<T> x_;
};

}  // namespace peft
