#pragma once
// MELoRA, mini-ensemble low-rank adapters (Ren et al., arXiv 2402.17263): n
// LoRAs of rank r on contiguous blocks, so ΔW is block-diagonal,
//   ΔW = blockdiag(s·B_0·A_0, …, s·B_{n−1}·A_{n−1}),   s = α/r per mini,
// lora_A.<i>: r x d_in/n, lora_B.<i>: d_out/n x r; input block i feeds output
// block i. Parameters r(d_in + d_out), as one LoRA of rank r, for an update of
// rank up to n·r. Init as LoRA per mini (A kaiming-uniform over d_in/n, B = 0).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <peft/adapters/lora.hpp>
#include <peft/core/dropout.hpp>
#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// MELoRA's hyperparameters.
struct MELoRAConfig {
  Index r = 8;             ///< rank of each mini
  Index n = 2;             ///< number of minis; must divide d_in and d_out
  double alpha = 16.0;     ///< scaling α/r per mini
  double dropout = 0.0;    ///< dropout on the adapter's input, in [0, 1)
  LoRAInit init = LoRAInit::KaimingUniform;  ///< as LoRA's, per mini
  std::uint64_t seed = 0;  ///< seeds the init and the dropout masks
};

/// MELoRA: n LoRAs of rank r on contiguous blocks, ΔW = blockdiag(s·B_i·A_i),
/// s = α/r; lora_A.i: r x d_in/n, lora_B.i: d_out/n x r (i = 0 … n−1).
template <class T>
class MELoRA : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Throws peft::Error for non-positive sizes, n not dividing both, r outside
  /// [1, min(d_in, d_out)/n], a non-finite or non-positive alpha, or dropout outside [0, 1).
  MELoRA(Index d_in, Index d_out, const MELoRAConfig& config = {})
      : d_in_(d_in), d_out_(d_out), config_(config), dropout_(validated(d_in, d_out, config).dropout, config.seed + 1) {
    bin_ = d_in / config.n;
    bout_ = d_out / config.n;
    scaling_ = static_cast<T>(config.alpha / static_cast<double>(config.r));
    for (Index i = 0; i < config.n; ++i) {
      params_.add("lora_A." + std::to_string(i), {config.r, bin_});
      params_.add("lora_B." + std::to_string(i), {bout_, config.r});
    }
    Rng rng(config.seed);
    for (Index i = 0; i < config.n; ++i) {
      if (config.init == LoRAInit::Gaussian) init::normal(A(i), 1.0 / static_cast<double>(config.r), rng);
      else init::kaiming_uniform(A(i), bin_, std::sqrt(5.0), rng);
      if (config.init == LoRAInit::None) init::kaiming_uniform(B(i), config.r, std::sqrt(5.0), rng);
    }
  }

  Index in_features() const { return d_in_; }             ///< d_in
  Index out_features() const { return d_out_; }           ///< d_out
  T scaling() const { return scaling_; }                  ///< s = α/r
  const MELoRAConfig& config() const { return config_; }  ///< the configuration it was built with

  /// lora_A.i (r x d_in/n) and lora_B.i (d_out/n x r) of mini i, in [0, n).
  ///@{
  MatrixMap<T> A(Index i) { return params_.value(2 * i); }
  MatrixMap<T> B(Index i) { return params_.value(2 * i + 1); }
  ConstMatrixMap<T> A(Index i) const { return params_.value(2 * i); }
  ConstMatrixMap<T> B(Index i) const { return params_.value(2 * i + 1); }
  ///@}

  /// Same matrix-product flops as one LoRA of rank r.
  double flops(Index N) const {
    return 6.0 * static_cast<double>(N) * static_cast<double>(config_.r) * static_cast<double>(d_in_ + d_out_);
  }

  void set_training(bool training) { training_ = training; }  ///< dropout applies only in training (the default)

  /// The dropout mask generator, for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() { return {&dropout_.rng()}; }

  /// ΔW = blockdiag(s·B_0·A_0, …), d_out x d_in.
  Matrix<T> delta_weight() const {
    Matrix<T> dW = Matrix<T>::Zero(d_out_, d_in_);
    for (Index i = 0; i < config_.n; ++i)
      dW.block(i * bout_, i * bin_, bout_, bin_).noalias() = (scaling_ * B(i)) * A(i);
    return dW;
  }

  /// Y += the block-diagonal s·B·A applied to X as forward_delta in eval mode,
  /// keeping nothing (const: several threads may call it at once).
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("MELoRA::infer_delta", X, Y, d_in_, d_out_);
    Matrix<T>& h = thread_matrix<MELoRA, T>(X.rows(), config_.r);
    for (Index i = 0; i < config_.n; ++i) {
      h.noalias() = X.middleCols(i * bin_, bin_) * A(i).transpose();
      Y.middleCols(i * bout_, bout_).noalias() += (scaling_ * h) * B(i).transpose();
    }
  }

  /// Y_i += s·D(X)_i·A_iᵀ·B_iᵀ for every block i.
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("MELoRA::forward_delta", X, Y, d_in_, d_out_);
    dropped_ = training_ && dropout_.active();
    if (dropped_) dropout_.forward(X, x_);
    else x_ = X;
    const Index r = config_.r;
    h_.resize(X.rows(), config_.n * r);
    for (Index i = 0; i < config_.n; ++i) {
      h_.middleCols(i * r, r).noalias() = x_.middleCols(i * bin_, bin_) * A(i).transpose();
      Y.middleCols(i * bout_, bout_).noalias() += (scaling_ * h_.middleCols(i * r, r)) * B(i).transpose();
    }
  }

  /// Per block: dB_i += s·dY_iᵀ·H_i, dA_i += (s·dY_i·B_i)ᵀ·D(X)_i, dX_i += mask ⊙ (s·dY_i·B_i·A_i).
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(h_.rows() == dY.rows() && dY.cols() == d_out_, "MELoRA::backward_delta: dY must be ",
                 detail::shape_str(h_.rows(), d_out_), " (N x d_out of the last forward), got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    const Index r = config_.r;
    dh_.resize(dY.rows(), r);
    if (dropped_) dx_.setZero(dY.rows(), d_in_);
    Matrix<T>& target = dropped_ ? dx_ : dX;
    for (Index i = 0; i < config_.n; ++i) {
      const auto dYi = dY.middleCols(i * bout_, bout_);
      params_.grad(2 * i + 1).noalias() += (scaling_ * dYi.transpose()) * h_.middleCols(i * r, r);
      dh_.noalias() = (scaling_ * dYi) * B(i);
      params_.grad(2 * i).noalias() += dh_.transpose() * x_.middleCols(i * bin_, bin_);
      target.middleCols(i * bin_, bin_).noalias() += dh_ * A(i);
    }
    if (dropped_) {
      dropout_.backward(dx_);
      dX += dx_;
    }
  }

 private:
  static const MELoRAConfig& validated(Index d_in, Index d_out, const MELoRAConfig& c) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "MELoRA: d_in and d_out must be positive, got d_in = ", d_in,
                 ", d_out = ", d_out);
    PEFT_REQUIRE(c.n >= 1 && d_in % c.n == 0 && d_out % c.n == 0, "MELoRA: the number of minis n must divide d_in = ",
                 d_in, " and d_out = ", d_out, ", got n = ", c.n);
    const Index max_rank = std::min(d_in, d_out) / c.n;
    PEFT_REQUIRE(c.r >= 1 && c.r <= max_rank, "MELoRA: rank per mini must be in [1, min(d_in, d_out)/n] = [1, ",
                 max_rank, "], got ", c.r);
    PEFT_REQUIRE(c.alpha > 0.0 && std::isfinite(c.alpha), "MELoRA: alpha must be a finite value > 0, got ", c.alpha);
    PEFT_REQUIRE(c.dropout >= 0.0 && c.dropout < 1.0, "MELoRA: dropout must be in [0, 1), got ", c.dropout);
    return c;
  }

  Index d_in_, d_out_;
  MELoRAConfig config_;
  Index bin_ = 0, bout_ = 0;  // block widths d_in/n, d_out/n
  T scaling_{};
  Dropout<T> dropout_;
  bool training_ = true;
  bool dropped_ = false;
  Matrix<T> x_, h_, dh_, dx_;
};

}  // namespace peft
