#pragma once
// The Houlsby adapter (Houlsby et al., ICML 2019), the bottleneck baseline the
// SURM adapter is compared with, on the wrapped layer's output:
//   H' = H + σ(H·W_downᵀ + b_down)·W_upᵀ + b_up
// down_weight: m x d, down_bias: m, up_weight: d x m, up_bias: d (d = d_out,
// m = bottleneck). Init: the down projection as nn.Linear (U(±1/√d)), the up
// projection and its bias zero, so the adapter starts as the identity.
// Not mergeable (σ is nonlinear).

#include <cmath>
#include <cstdint>

#include <peft/core/activation.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// Houlsby's hyperparameters.
struct HoulsbyConfig {
  Index bottleneck = 64;                     ///< m, the hidden width, >= 1
  Activation activation = Activation::GELU;  ///< σ
  std::uint64_t seed = 0;                    ///< seeds the down projection's init
};

/// The Houlsby bottleneck adapter on the layer's output:
/// H' = H + σ(H·W_downᵀ + b_down)·W_upᵀ + b_up (W_down: m x d_out, W_up: d_out x m). Not mergeable.
template <class T>
class Houlsby : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;
  static constexpr Index kDownW = 0, kDownB = 1, kUpW = 2, kUpB = 3;

 public:
  using Scalar = T;  ///< element type

  /// Starts as the identity (W_up, b_up = 0); throws peft::Error for non-positive sizes or bottleneck.
  Houlsby(Index d_in, Index d_out, const HoulsbyConfig& config = {}) : d_in_(d_in), d_(d_out), config_(config) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "Houlsby: d_in and d_out must be positive, got d_in = ", d_in, ", d_out = ", d_out);
    PEFT_REQUIRE(config.bottleneck >= 1, "Houlsby: bottleneck must be >= 1, got ", config.bottleneck);
    const Index m = config.bottleneck;
    params_.add("down_weight", {m, d_out});
    params_.add("down_bias", {m});
    params_.add("up_weight", {d_out, m});
    params_.add("up_bias", {d_out});
    Rng rng(config.seed);
    const double bound = 1.0 / std::sqrt(static_cast<double>(d_out));
    init::uniform(params_.value(kDownW), bound, rng);
    init::uniform(params_.value(kDownB), bound, rng);
  }

  Index in_features() const { return d_in_; }              ///< d_in
  Index out_features() const { return d_; }                ///< d_out
  const HoulsbyConfig& config() const { return config_; }  ///< the configuration it was built with

  /// Two GEMMs of N x d x m forward, four backward.
  double flops(Index N) const {
    return 12.0 * static_cast<double>(N) * static_cast<double>(d_) * static_cast<double>(config_.bottleneck);
  }

  /// forward_output keeping nothing (const: several threads may call it at once).
  void infer_output(Matrix<T>& H) const {
    PEFT_REQUIRE(H.cols() == d_, "Houlsby::infer_output: H must have d_out = ", d_, " columns, got ",
                 ::peft::detail::shape_str(H.rows(), H.cols()));
    Matrix<T>& a = thread_matrix<Houlsby, T, 0>(H.rows(), params_.value(kDownW).rows());
    Matrix<T>& s = thread_matrix<Houlsby, T, 1>(H.rows(), a.cols());
    a.noalias() = H * params_.value(kDownW).transpose();
    a.rowwise() += params_.value(kDownB).row(0);
    detail::activation_into(config_.activation, a, s, false);
    H.noalias() += s * params_.value(kUpW).transpose();
    H.rowwise() += params_.value(kUpB).row(0);
  }

  /// H ← H' in place (H: N x d_out); keeps H and the hidden activations for backward.
  void forward_output(Matrix<T>& H) {
    PEFT_REQUIRE(H.cols() == d_, "Houlsby::forward_output: H must have d_out = ", d_, " columns, got ",
                 ::peft::detail::shape_str(H.rows(), H.cols()));
    h_ = H;
    a_.noalias() = H * params_.value(kDownW).transpose();
    a_.rowwise() += params_.value(kDownB).row(0);
    detail::activation_into(config_.activation, a_, s_, false);
    H.noalias() += s_ * params_.value(kUpW).transpose();
    H.rowwise() += params_.value(kUpB).row(0);
  }

  /// dH' → dH in place; adds into the four parameter gradients. Throws peft::Error
  /// unless dH has the last forward's shape.
  void backward_output(Matrix<T>& dH) {
    PEFT_REQUIRE(dH.rows() == h_.rows() && dH.cols() == d_, "Houlsby::backward_output: dH must be ",
                 ::peft::detail::shape_str(h_.rows(), d_), " like the last forward, got ",
                 ::peft::detail::shape_str(dH.rows(), dH.cols()));
    params_.grad(kUpB).row(0) += dH.colwise().sum();
    params_.grad(kUpW).noalias() += dH.transpose() * s_;
    da_.noalias() = dH * params_.value(kUpW);
    detail::multiply_by_derivative(config_.activation, a_, da_);
    params_.grad(kDownW).noalias() += da_.transpose() * h_;
    params_.grad(kDownB).row(0) += da_.colwise().sum();
    dH.noalias() += da_ * params_.value(kDownW);
  }

 private:
  Index d_in_, d_;
  HoulsbyConfig config_;
  Matrix<T> h_, a_, s_, da_;
};

}  // namespace peft
