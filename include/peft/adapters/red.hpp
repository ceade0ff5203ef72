#pragma once
// RED, representation editing (Wu et al., arXiv 2402.15179): a learned scale
// and bias on the wrapped layer's output,
//   H' = H ⊙ s + β,   red_scale s: d_out (starts at 1), red_bias β: d_out (starts at 0).
// Scale-only or bias-only by config; the untrained part stays at its identity
// value. Exact merge: W ← diag(s)·W, b ← s ⊙ b + β (a bias is created if the
// base had none, and removed again by unmerge).

#include <cmath>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// Which of RED's two vectors are trained (at least one).
struct REDConfig {
  bool scale = true;  ///< train red_scale
  bool bias = true;   ///< train red_bias
};

/// RED: a learned scale and bias on the layer's output, H' = H ⊙ s + β,
/// red_scale s: d_out (starts at 1), red_bias β: d_out (starts at 0).
template <class T>
class RED : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Throws peft::Error for non-positive sizes or when neither vector is trained.
  RED(Index d_in, Index d_out, const REDConfig& config = {}) : d_in_(d_in), d_out_(d_out), config_(config) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "RED: d_in and d_out must be positive, got d_in = ", d_in, ", d_out = ", d_out);
    PEFT_REQUIRE(config.scale || config.bias, "RED: at least one of scale and bias must be trained");
    if (config.scale) {
      scale_ = params_.add("red_scale", {d_out});
      params_.value(scale_).setOnes();
    }
    if (config.bias) bias_ = params_.add("red_bias", {d_out});
  }

  Index in_features() const { return d_in_; }          ///< d_in
  Index out_features() const { return d_out_; }        ///< d_out
  const REDConfig& config() const { return config_; }  ///< the configuration it was built with

  /// Elementwise flops for N rows: scale and shift forward, two reductions and
  /// a scale backward.
  double flops(Index N) const { return 5.0 * static_cast<double>(N) * static_cast<double>(d_out_); }

  /// The scale as a row (ones when not trained) and the bias (zeros when not).
  ///@{
  Eigen::Matrix<T, 1, Eigen::Dynamic> scale() const {
    return config_.scale ? Eigen::Matrix<T, 1, Eigen::Dynamic>(params_.value(scale_))
                         : Eigen::Matrix<T, 1, Eigen::Dynamic>::Ones(d_out_);
  }
  Eigen::Matrix<T, 1, Eigen::Dynamic> bias() const {
    return config_.bias ? Eigen::Matrix<T, 1, Eigen::Dynamic>(params_.value(bias_))
                        : Eigen::Matrix<T, 1, Eigen::Dynamic>::Zero(d_out_);
  }
  ///@}

  /// forward_output keeping nothing (const: several threads may call it at once).
  void infer_output(Matrix<T>& H) const {
    PEFT_REQUIRE(H.cols() == d_out_, "RED::infer_output: H must have d_out = ", d_out_, " columns, got ",
                 detail::shape_str(H.rows(), H.cols()));
    if (config_.scale) H.array().rowwise() *= params_.value(scale_).row(0).array();
    if (config_.bias) H.rowwise() += params_.value(bias_).row(0);
  }

  /// H ← H ⊙ s + β; keeps H for the scale's gradient.
  void forward_output(Matrix<T>& H) {
    PEFT_REQUIRE(H.cols() == d_out_, "RED::forward_output: H must have d_out = ", d_out_, " columns, got ",
                 detail::shape_str(H.rows(), H.cols()));
    if (config_.scale) h_.resize(H.rows(), H.cols());
    // One pass over the rows, each in L1 while it is kept, scaled and shifted.
    for (Index r = 0; r < H.rows(); ++r) {
      if (config_.scale) {
        h_.row(r) = H.row(r);
        H.row(r).array() *= params_.value(scale_).row(0).array();
      }
      if (config_.bias) H.row(r) += params_.value(bias_).row(0);
    }
  }

  /// ds += Σ_n dH' ⊙ H, dβ += Σ_n dH', dH = dH' ⊙ s.
  void backward_output(Matrix<T>& dH) {
    if (config_.scale) {
      PEFT_REQUIRE(h_.rows() == dH.rows() && dH.cols() == d_out_, "RED::backward_output: dH must be ",
                   detail::shape_str(h_.rows(), d_out_), " (N x d_out of the last forward), got ",
                   detail::shape_str(dH.rows(), dH.cols()));
    } else {
      PEFT_REQUIRE(dH.cols() == d_out_, "RED::backward_output: dH must have d_out = ", d_out_, " columns, got ",
                   detail::shape_str(dH.rows(), dH.cols()));
    }
    // One pass over the rows: both batch sums, then the scale applied.
    for (Index r = 0; r < dH.rows(); ++r) {
      if (config_.scale) params_.grad(scale_).row(0).array() += dH.row(r).array() * h_.row(r).array();
      if (config_.bias) params_.grad(bias_).row(0) += dH.row(r);
      if (config_.scale) dH.row(r).array() *= params_.value(scale_).row(0).array();
    }
  }

  /// W ← diag(s)·W, b ← s ⊙ b + β.
  void merge_into(Linear<T>& base) {
    const auto s = scale();
    PEFT_REQUIRE(s.allFinite() && bias().allFinite(), "RED::merge_into: red_scale and red_bias must be finite");
    created_bias_ = !base.has_bias();
    if (created_bias_) base.bias() = Vector<T>::Zero(d_out_);
    base.weight().array().colwise() *= s.transpose().array();
    base.bias() = (base.bias().array() * s.transpose().array()).matrix() + bias().transpose();
  }

  /// W ← diag(1/s)·W, b ← (b − β) / s: exact, and impossible where s = 0.
  void unmerge_from(Linear<T>& base) {
    const auto s = scale();
    PEFT_REQUIRE((s.array() != T(0)).all(), "RED::unmerge_from: red_scale has a zero entry, so the merge cannot be undone");
    base.weight().array().colwise() /= s.transpose().array();
    if (created_bias_) {
      base.bias() = Vector<T>();
    } else {
      base.bias() = ((base.bias() - bias().transpose()).array() / s.transpose().array()).matrix();
    }
  }

 private:
  Index d_in_, d_out_;
  REDConfig config_;
  Index scale_ = -1, bias_ = -1;
  bool created_bias_ = false;
  Matrix<T> h_;
};

}  // namespace peft
