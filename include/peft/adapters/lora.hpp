#pragma once
// LoRA as Hugging Face PEFT 0.21 does it:
//   Y = X·W0ᵀ + b + s·D(X)·Aᵀ·Bᵀ,   ΔW = s·B·A,   s = α/r (rsLoRA: α/√r)
// lora_A: r x d_in, lora_B: d_out x r, D = dropout on the adapter path only.
// Init (PEFT's init_lora_weights): A ~ kaiming_uniform(a=√5) = U(±1/√d_in),
// B = 0, so the layer starts as the frozen one; Gaussian: A ~ N(0, 1/r²);
// None: PyTorch's nn.Linear default for both (B ~ U(±1/√r)), non-zero ΔW.
// lora_bias adds `lora_B.bias` (d_out): Y += s·b_B, merged into the base bias.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <peft/core/dropout.hpp>
#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// How LoRA initialises lora_A and lora_B (PEFT's init_lora_weights).
enum class LoRAInit {
  KaimingUniform,  ///< PEFT's init_lora_weights=True
  Gaussian,        ///< init_lora_weights="gaussian"
  None,            ///< init_lora_weights=False: nn.Linear defaults, ΔW != 0
};

/// LoRA's hyperparameters, named as in PEFT's LoraConfig.
struct LoRAConfig {
  Index r = 8;             ///< rank, >= 1 (above min(d_in, d_out) allowed, as PEFT allows)
  double alpha = 8.0;      ///< lora_alpha, > 0
  bool rslora = false;     ///< scale by α/√r instead of α/r
  double dropout = 0.0;    ///< lora_dropout, in [0, 1)
  LoRAInit init = LoRAInit::KaimingUniform;  ///< init_lora_weights
  std::uint64_t seed = 0;  ///< seeds the init and the dropout masks
  bool lora_bias = false;  ///< PEFT's lora_bias: lora_B has a bias b_B (zero, or U(±1/√r) with init None), Y += s·b_B
};

/// LoRA: ΔW = s·B·A with lora_A r x d_in, lora_B d_out x r, s = α/r (rsLoRA: α/√r);
/// Y += s·D(X)·Aᵀ·Bᵀ with dropout D on the adapter path.
template <class T>
class LoRA : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Initialised as `config.init` says; throws peft::Error for non-positive sizes,
  /// r < 1, a non-finite or non-positive alpha, or dropout outside [0, 1).
  LoRA(Index d_in, Index d_out, const LoRAConfig& config = {})
      : d_in_(d_in), d_out_(d_out), config_(config), dropout_(validated(d_in, d_out, config).dropout, config.seed + 1) {
    scaling_ = static_cast<T>(config.rslora ? config.alpha / std::sqrt(static_cast<double>(config.r))
                                            : config.alpha / static_cast<double>(config.r));
    params_.add("lora_A", {config.r, d_in});
    params_.add("lora_B", {d_out, config.r});
    if (config.lora_bias) params_.add("lora_B.bias", {d_out});
    Rng rng(config.seed);
    switch (config.init) {
      case LoRAInit::KaimingUniform:
        init::kaiming_uniform(A(), d_in, std::sqrt(5.0), rng);
        break;
      case LoRAInit::Gaussian:
        init::normal(A(), 1.0 / static_cast<double>(config.r), rng);
        break;
      case LoRAInit::None:
        init::kaiming_uniform(A(), d_in, std::sqrt(5.0), rng);
        init::kaiming_uniform(B(), config.r, std::sqrt(5.0), rng);
        if (config.lora_bias) init::uniform(params_.value(kBias), 1.0 / std::sqrt(static_cast<double>(config.r)), rng);
        break;
    }
  }

  Index in_features() const { return d_in_; }           ///< d_in
  Index out_features() const { return d_out_; }         ///< d_out
  Index rank() const { return config_.r; }              ///< r
  T scaling() const { return scaling_; }                ///< s = α/r, or α/√r with rslora
  const LoRAConfig& config() const { return config_; }  ///< the configuration it was built with

  /// lora_A (r x d_in) and lora_B (d_out x r), views into the parameter block.
  ///@{
  MatrixMap<T> A() { return params_.value(kA); }
  MatrixMap<T> B() { return params_.value(kB); }
  ConstMatrixMap<T> A() const { return params_.value(kA); }
  ConstMatrixMap<T> B() const { return params_.value(kB); }
  ///@}

  /// Matrix-product flops of forward + backward for N rows: two thin GEMMs
  /// forward (X·Aᵀ, H·Bᵀ), four backward (dB, dH, dA, dX).
  double flops(Index N) const {
    return 6.0 * static_cast<double>(N) * static_cast<double>(config_.r) * static_cast<double>(d_in_ + d_out_);
  }

  void set_training(bool training) { training_ = training; }  ///< dropout applies only in training (the default)
  bool training() const { return training_; }                 ///< whether in training mode
  /// The dropout mask generator, for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() { return {&dropout_.rng()}; }

  /// ΔW = s·B·A (d_out x d_in).
  Matrix<T> delta_weight() const { return (scaling_ * B()) * A(); }

  /// W += ΔW, and with lora_bias b += s·b_B (which needs a base bias, as in PEFT).
  void merge_into(Linear<T>& base) const { fold_into(base, T(1)); }
  /// W −= ΔW (and b −= s·b_B): undoes merge_into.
  void unmerge_from(Linear<T>& base) const { fold_into(base, T(-1)); }

  /// Y += s·D(X)·Aᵀ·Bᵀ; keeps D(X) and H = D(X)·Aᵀ for backward.
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("LoRA::forward_delta", X, Y, d_in_, d_out_);
    dropped_ = training_ && dropout_.active();
    if (dropped_) {
      dropout_.forward(X, x_);
    } else {
      x_ = X;
    }
    h_.noalias() = x_ * A().transpose();
    Y.noalias() += (scaling_ * h_) * B().transpose();
    if (config_.lora_bias)  // row by row: Eigen would evaluate s·b_B into a temporary for rowwise()
      for (Index n = 0; n < Y.rows(); ++n) Y.row(n) += scaling_ * params_.value(kBias).row(0);
  }

  /// Y += s·X·Aᵀ·Bᵀ as forward_delta in eval mode, keeping nothing (const:
  /// several threads may call it at once).
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("LoRA::infer_delta", X, Y, d_in_, d_out_);
    Matrix<T>& h = thread_matrix<LoRA, T>(X.rows(), config_.r);
    h.noalias() = X * A().transpose();
    Y.noalias() += (scaling_ * h) * B().transpose();
    if (config_.lora_bias)
      for (Index n = 0; n < Y.rows(); ++n) Y.row(n) += scaling_ * params_.value(kBias).row(0);
  }

  /// dB += s·dYᵀ·H, dA += (s·dY·B)ᵀ·D(X), dX += mask ⊙ (s·dY·B·A).
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(h_.rows() == dY.rows() && dY.cols() == d_out_, "LoRA::backward_delta: dY must be ",
                 detail::shape_str(h_.rows(), d_out_), " (N x d_out of the last forward), got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    PEFT_ASSERT(dX.rows() == dY.rows() && dX.cols() == d_in_);
    params_.grad(kB).noalias() += (scaling_ * dY.transpose()) * h_;
    if (config_.lora_bias)
      for (Index n = 0; n < dY.rows(); ++n) params_.grad(kBias).row(0) += scaling_ * dY.row(n);
    dh_.noalias() = (scaling_ * dY) * B();
    params_.grad(kA).noalias() += dh_.transpose() * x_;
    if (dropped_) {
      dx_.noalias() = dh_ * A();
      dropout_.backward(dx_);
      dX += dx_;
    } else {
      dX.noalias() += dh_ * A();
    }
  }

 private:
  static constexpr Index kA = 0, kB = 1, kBias = 2;

  void fold_into(Linear<T>& base, T sign) const {
    PEFT_REQUIRE(base.in_features() == d_in_ && base.out_features() == d_out_, "LoRA::merge: base must be ",
                 detail::shape_str(d_out_, d_in_), ", got ", detail::shape_str(base.out_features(), base.in_features()));
    if (config_.lora_bias)
      PEFT_REQUIRE(base.has_bias(), "LoRA::merge: lora_bias needs a base layer with a bias; this one has none");
    base.weight() += sign * delta_weight();
    if (config_.lora_bias) base.bias() += (sign * scaling_) * params_.value(kBias).row(0).transpose();
  }

  static const LoRAConfig& validated(Index d_in, Index d_out, const LoRAConfig& c) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "LoRA: d_in and d_out must be positive, got d_in = ", d_in,
                 ", d_out = ", d_out);
    // r > min(d_in, d_out) is allowed, as PEFT allows it (ΔW's rank is then min(d_in, d_out)).
    PEFT_REQUIRE(c.r >= 1, "LoRA: rank must be >= 1, got ", c.r);
    PEFT_REQUIRE(c.alpha > 0.0 && std::isfinite(c.alpha), "LoRA: alpha must be a finite value > 0, got ", c.alpha);
    PEFT_REQUIRE(c.dropout >= 0.0 && c.dropout < 1.0, "LoRA: dropout must be in [0, 1), got ", c.dropout);
    return c;
  }

  Index d_in_, d_out_;
  LoRAConfig config_;
  T scaling_{};
  Dropout<T> dropout_;
  bool training_ = true;
  bool dropped_ = false;  // whether the last forward applied dropout
  // Forward cache and backward scratch, reused across calls.
  Matrix<T> x_, h_, dh_, dx_;
};

}  // namespace peft
