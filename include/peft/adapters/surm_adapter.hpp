#pragma once
// The SURM adapter (Sehanobish et al., NeurIPS 2024): one square structured
// matrix in place of a Houlsby adapter's down/up pair, on the wrapped layer's
// output (d = d_out):
//   H' = H + σ(D(H)·Mᵀ) + β,   M = α·S (S as in SURM: circulant, symmetric
//   Toeplitz, Toeplitz, Kronecker or LDR), β = adapter_bias (d), D = dropout.
// σ is exact-erf GELU by default (ReLU and identity available). M starts at 0
// and β at 0, so the adapter starts as the identity. Parameters: the
// structure's (as in SURM) plus adapter_bias. Not mergeable (σ is nonlinear).

#include <cstdint>
#include <vector>

#include <peft/adapters/surm.hpp>
#include <peft/core/activation.hpp>
#include <peft/core/dropout.hpp>
#include <peft/core/error.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// The SURM adapter's hyperparameters.
struct SURMAdapterConfig {
  Structure structure = Structure::Circulant;  ///< the structure of S, as in SURM
  Index rank = 1;       ///< LDR ρ or Kronecker r
  double alpha = 1.0;   ///< scaling of the structured matrix
  Activation activation = Activation::GELU;  ///< σ
  double dropout = 0.0;  ///< on the adapter's input, in [0, 1)
  std::uint64_t seed = 0;  ///< seeds the init and the dropout masks
};

// The structured matrix is a square SURM reused privately: its products and
// parameters, with adapter_bias appended to the same parameter block.
/// The SURM adapter on the layer's output: H' = H + σ(D(H)·Mᵀ) + β with one square
/// structured M = α·S (d_out x d_out, S as in SURM) and adapter_bias β (d_out). Not mergeable.
template <class T>
class SURMAdapter : private SURM<T> {
  using Base = SURM<T>;

 public:
  using Scalar = T;  ///< element type
  using Base::num_params;
  using Base::parameter_block;
  using Base::parameters;
  using Base::zero_grad;

  /// Starts as the identity (M = 0, β = 0); throws peft::Error as SURM(d_out, d_out) does,
  /// for a non-positive d_in, or for dropout outside [0, 1).
  SURMAdapter(Index d_in, Index d_out, const SURMAdapterConfig& config = {})
      : Base(d_out, d_out, SURMConfig{config.structure, config.rank, config.alpha, config.seed}),
        d_in_(d_in),
        d_(d_out),
        config_(config),
        dropout_(config.dropout, config.seed + 1) {
    PEFT_REQUIRE(d_in > 0, "SURMAdapter: d_in must be positive, got ", d_in);
    bias_ = this->parameter_block().add("adapter_bias", {d_out});
  }

  Index in_features() const { return d_in_; }                  ///< d_in
  Index out_features() const { return d_; }                    ///< d_out
  const SURMAdapterConfig& config() const { return config_; }  ///< the configuration it was built with
  void set_training(bool training) { training_ = training; }   ///< dropout applies only in training (the default)
  /// The dropout mask generator, for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() { return {&dropout_.rng()}; }

  /// The structured matrix M = α·S (d x d), densely: for tests.
  Matrix<T> structured_matrix() const { return Base::delta_weight(); }

  /// The structured product's flops plus the elementwise activation, bias and their gradients, for N rows.
  double flops(Index N) const { return Base::flops(N) + 10.0 * static_cast<double>(N) * static_cast<double>(d_); }

  /// H ← H' in place (H: N x d_out); keeps D(H) and the pre-activations for backward.
  void forward_output(Matrix<T>& H) {
    PEFT_REQUIRE(H.cols() == d_, "SURMAdapter::forward_output: H must have d_out = ", d_, " columns, got ",
                 ::peft::detail::shape_str(H.rows(), H.cols()));
    dropped_ = training_ && dropout_.active();
    if (dropped_) dropout_.forward(H, h_);
    else h_ = H;
    z_.setZero(H.rows(), d_);
    Base::forward_delta(h_, z_);
    detail::activation_into(config_.activation, z_, H, true);
    H.rowwise() += this->parameter_block().value(bias_).row(0);
  }

  /// forward_output in eval mode (no dropout), keeping nothing (const: several
  /// threads may call it at once).
  void infer_output(Matrix<T>& H) const {
    PEFT_REQUIRE(H.cols() == d_, "SURMAdapter::infer_output: H must have d_out = ", d_, " columns, got ",
                 ::peft::detail::shape_str(H.rows(), H.cols()));
    Matrix<T>& z = thread_matrix<SURMAdapter, T>(H.rows(), d_);
    z.setZero();
    Base::infer_delta(H, z);  // reads all of H before it is edited below
    detail::activation_into(config_.activation, z, H, true);
    H.rowwise() += this->parameter_block().value(bias_).row(0);
  }

  /// dH' → dH in place; adds into the structure's and adapter_bias's gradients. Throws
  /// peft::Error unless dH has the last forward's shape.
  void backward_output(Matrix<T>& dH) {
    PEFT_REQUIRE(dH.rows() == z_.rows() && dH.cols() == d_, "SURMAdapter::backward_output: dH must be ",
                 ::peft::detail::shape_str(z_.rows(), d_), " like the last forward, got ",
                 ::peft::detail::shape_str(dH.rows(), dH.cols()));
    this->parameter_block().grad(bias_).row(0) += dH.colwise().sum();
    dz_ = dH;
    detail::multiply_by_derivative(config_.activation, z_, dz_);
    dh_.setZero(dH.rows(), d_);
    Base::backward_delta(dz_, dh_);
    if (dropped_) dropout_.backward(dh_);
    dH += dh_;
  }

 private:
  Index d_in_, d_;
  SURMAdapterConfig config_;
  Index bias_ = -1;
  Dropout<T> dropout_;
  bool training_ = true, dropped_ = false;
  Matrix<T> h_, z_, dz_, dh_;
};

}  // namespace peft
