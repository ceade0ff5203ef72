#pragma once
// LoRTA, low-rank tensor adaptation (Hounie et al., arXiv 2410.04060): the
// updates of every adapted d x d matrix — L layers, M matrix types (q, k, v,
// o, ...), H heads — form one rank-r CP tensor shared by the whole model:
//   c = C_H[h] ⊙ C_M[m] ⊙ C_L[l] (r entries),  Δ_{l,m,h} = A·diag(c)·B (d x d_h)
//   ΔW_{l,m} = s·[Δ_{l,m,0} | … | Δ_{l,m,H−1}],  s = α/r (rsLoRA: α/√r)
// with the head blocks splitting the input dimension (the PEFT fork's
// orientation). Shared factors (LoRTAFactors): lora_A d x r, lora_B r x d_h,
// lora_C_h H x r, lora_C_l L x r, lora_C_m M x r. Each LoRTA(factors, l, m)
// adapter's backward adds into the shared gradients; ΔW is never formed in
// training. Init: A ~ U(±1/√r), B = 0 (ΔW = 0), C ~ kaiming_uniform(a =
// √5·init_scale) over fan_in r.

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include <peft/core/dropout.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// LoRTA's hyperparameters, for the whole model.
struct LoRTAConfig {
  Index r = 8;             ///< CP rank, >= 1
  double alpha = 8.0;      ///< s = α/r (rsLoRA: α/√r), > 0
  Index d = 0;             ///< hidden size: every adapted matrix is d x d
  Index heads = 1;         ///< H, must divide d (1: no head mode)
  Index layers = 1;        ///< L
  Index matrix_types = 4;  ///< M (e.g. q, k, v, o)
  bool rslora = false;     ///< scale by α/√r instead of α/r
  double dropout = 0.0;    ///< on the adapter's input, in [0, 1)
  double init_scale = 0.0; ///< C factors ~ kaiming_uniform(a = √5·init_scale) over fan_in r
  std::uint64_t seed = 0;  ///< seeds the init and the dropout masks
};

/// The CP factors shared by every LoRTA adapter of a model: one parameter
/// block, stepped once per optimisation step however many layers use it.
template <class T>
class LoRTAFactors : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type
  /// Indices of lora_A, lora_B, lora_C_h, lora_C_l and lora_C_m, for value() and grad().
  ///@{
  static constexpr Index kA = 0, kB = 1, kCh = 2, kCl = 3, kCm = 4;
  ///@}

  /// Throws peft::Error for d <= 0, heads not dividing d, layers, matrix_types or r < 1,
  /// or a non-finite or non-positive alpha.
  explicit LoRTAFactors(const LoRTAConfig& config) : config_(config) {
    const auto& c = config;
    PEFT_REQUIRE(c.d > 0, "LoRTAFactors: d must be positive, got ", c.d);
    PEFT_REQUIRE(c.heads >= 1 && c.d % c.heads == 0, "LoRTAFactors: heads must divide d = ", c.d, ", got heads = ",
                 c.heads);
    PEFT_REQUIRE(c.layers >= 1, "LoRTAFactors: layers must be >= 1, got ", c.layers);
    PEFT_REQUIRE(c.matrix_types >= 1, "LoRTAFactors: matrix_types must be >= 1, got ", c.matrix_types);
    PEFT_REQUIRE(c.r >= 1, "LoRTAFactors: r must be >= 1, got ", c.r);
    PEFT_REQUIRE(c.alpha > 0.0 && std::isfinite(c.alpha), "LoRTAFactors: alpha must be a finite value > 0, got ", c.alpha);
    params_.add("lora_A", {c.d, c.r});
    params_.add("lora_B", {c.r, head_dim()});
    params_.add("lora_C_h", {c.heads, c.r});
    params_.add("lora_C_l", {c.layers, c.r});
    params_.add("lora_C_m", {c.matrix_types, c.r});
    Rng rng(c.seed);
    init::kaiming_uniform(params_.value(kA), c.r, std::sqrt(5.0), rng);
    for (const Index i : {kCh, kCl, kCm}) init::kaiming_uniform(params_.value(i), c.r, std::sqrt(5.0) * c.init_scale, rng);
  }

  const LoRTAConfig& config() const { return config_; }         ///< the configuration they were built with
  Index head_dim() const { return config_.d / config_.heads; }  ///< d_h = d / H
  /// s = α/r, or α/√r with rslora.
  T scaling() const {
    const double r = static_cast<double>(config_.r);
    return static_cast<T>(config_.rslora ? config_.alpha / std::sqrt(r) : config_.alpha / r);
  }

  /// Factor i (kA, ..., kCm) and its gradient.
  ///@{
  MatrixMap<T> value(Index i) { return params_.value(i); }
  ConstMatrixMap<T> value(Index i) const { return params_.value(i); }
  MatrixMap<T> grad(Index i) { return params_.grad(i); }
  ///@}

  /// c_h = C_H[h] ⊙ C_M[m] ⊙ C_L[l] for every head, as the rows of c (H x r;
  /// an out-parameter so that a layer's kept matrix is reused every step).
  void head_coefficients(Index layer, Index matrix_type, Matrix<T>& c) const {
    const auto cm = params_.value(kCm).row(matrix_type).array(), cl = params_.value(kCl).row(layer).array();
    c.resize(config_.heads, config_.r);
    for (Index h = 0; h < config_.heads; ++h) c.row(h).array() = params_.value(kCh).row(h).array() * cm * cl;
  }

  // parameters(), parameter_block(), zero_grad() and num_params() (which is
  // r·(d + d_h + H + L + M) for the whole model) come from OwnsParameters.

 private:
  LoRTAConfig config_;
};

/// One adapted d x d Linear (layer l, matrix type m) drawing on shared factors.
/// parameters() are the shared factors' views: step them once per step (e.g.
/// through the factors object), not once per layer.
template <class T>
class LoRTA {
 public:
  using Scalar = T;                 ///< element type
  using Factors = LoRTAFactors<T>;  ///< the shared factor set

  /// Throws peft::Error for null factors or a layer or matrix type out of range.
  LoRTA(std::shared_ptr<Factors> factors, Index layer, Index matrix_type)
      : factors_(std::move(factors)), layer_(layer), type_(matrix_type) {
    PEFT_REQUIRE(factors_ != nullptr, "LoRTA: factors must not be null");
    const auto& c = factors_->config();
    PEFT_REQUIRE(layer >= 0 && layer < c.layers, "LoRTA: layer index must be in [0, ", c.layers, "), got ", layer);
    PEFT_REQUIRE(matrix_type >= 0 && matrix_type < c.matrix_types, "LoRTA: matrix type must be in [0, ", c.matrix_types,
                 "), got ", matrix_type);
    dropout_ = Dropout<T>(c.dropout, c.seed + 1 + static_cast<std::uint64_t>(layer * c.matrix_types + matrix_type));
  }

  Index in_features() const { return factors_->config().d; }   ///< d
  Index out_features() const { return factors_->config().d; }  ///< d
  Index layer() const { return layer_; }                       ///< l, in [0, L)
  Index matrix_type() const { return type_; }                  ///< m, in [0, M)
  /// The shared factors.
  ///@{
  Factors& factors() { return *factors_; }
  const Factors& factors() const { return *factors_; }
  ///@}

  std::vector<Parameter<T>> parameters() { return factors_->parameters(); }  ///< the shared factors' views
  void zero_grad() { factors_->zero_grad(); }                                ///< zeroes every layer's shared gradients
  /// The shared factors' count (the whole model's, not this layer's share).
  Index num_params() const { return factors_->num_params(); }

  /// Matrix-product flops for N rows: X_h·Bᵀ and V·Aᵀ forward; dA, dV, dB, dX backward.
  double flops(Index N) const {
    const auto& c = factors_->config();
    return 12.0 * static_cast<double>(N) * static_cast<double>(c.r) * static_cast<double>(c.d);
  }

  void set_training(bool training) { training_ = training; }  ///< dropout applies only in training (the default)

  /// The dropout mask generator, for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() { return {&dropout_.rng()}; }

  /// ΔW = s·[A·diag(c_h)·B]_h, head blocks along the columns.
  Matrix<T> delta_weight() const {
    const auto& c = factors_->config();
    const Index dh = factors_->head_dim();
    Matrix<T> coeff;
    factors_->head_coefficients(layer_, type_, coeff);
    const auto A = factors_->value(Factors::kA);
    const auto B = factors_->value(Factors::kB);
    Matrix<T> dW(c.d, c.d);
    for (Index h = 0; h < c.heads; ++h)
      dW.middleCols(h * dh, dh).noalias() = factors_->scaling() * (A * coeff.row(h).asDiagonal()) * B;
    return dW;
  }

  /// forward_delta in eval mode keeping nothing (const: several threads may call it at once).
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    const auto& c = factors_->config();
    PEFT_REQUIRE(X.cols() == c.d && Y.rows() == X.rows() && Y.cols() == c.d, "LoRTA::infer_delta: expected X and Y of N x d = ",
                 detail::shape_str(X.rows(), c.d), ", got X ", detail::shape_str(X.rows(), X.cols()), ", Y ",
                 detail::shape_str(Y.rows(), Y.cols()));
    const Index N = X.rows(), H = c.heads, dh = factors_->head_dim();
    const Factors& shared = *factors_;
    const T* x = X.data();
    if (X.outerStride() != X.cols()) {  // the head view below needs rows back to back
      Matrix<T>& packed = thread_matrix<LoRTA, T, 0>(N, c.d);
      packed = X;
      x = packed.data();
    }
    Matrix<T>& coeff = thread_matrix<LoRTA, T, 1>(H, c.r);
    Matrix<T>& u = thread_matrix<LoRTA, T, 2>(N * H, c.r);
    Matrix<T>& v = thread_matrix<LoRTA, T, 3>(N, c.r);
    shared.head_coefficients(layer_, type_, coeff);
    u.noalias() = ConstMatrixMap<T>(x, N * H, dh) * shared.value(Factors::kB).transpose();
    v.setZero();
    for (Index n = 0; n < N; ++n)
      for (Index h = 0; h < H; ++h) v.row(n).array() += u.row(n * H + h).array() * coeff.row(h).array();
    Y.noalias() += (shared.scaling() * v) * shared.value(Factors::kA).transpose();
  }

  /// U = D(X) viewed as (N·H) x d_h times Bᵀ; V[n] = Σ_h U[n·H + h] ⊙ c_h; Y += s·V·Aᵀ.
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    const auto& c = factors_->config();
    PEFT_REQUIRE(X.cols() == c.d && Y.rows() == X.rows() && Y.cols() == c.d, "LoRTA::forward_delta: expected X and Y of N x d = ",
                 detail::shape_str(X.rows(), c.d), ", got X ", detail::shape_str(X.rows(), X.cols()), ", Y ",
                 detail::shape_str(Y.rows(), Y.cols()));
    const Index N = X.rows(), H = c.heads, dh = factors_->head_dim();
    dropped_ = training_ && dropout_.active();
    if (dropped_) dropout_.forward(X, x_);
    else x_ = X;
    factors_->head_coefficients(layer_, type_, coeff_);
    const ConstMatrixMap<T> x_heads(x_.data(), N * H, dh);
    u_.noalias() = x_heads * factors_->value(Factors::kB).transpose();
    v_.setZero(N, c.r);
    for (Index n = 0; n < N; ++n)
      for (Index h = 0; h < H; ++h) v_.row(n).array() += u_.row(n * H + h).array() * coeff_.row(h).array();
    Y.noalias() += (factors_->scaling() * v_) * factors_->value(Factors::kA).transpose();
  }

  /// dA += s·Gᵀ·V; dV = s·G·A; dU_h = dV ⊙ c_h; dc_h = Σ_n dV ⊙ U_h;
  /// dB += dUᵀ·D(X)_heads; dX_heads += dU·B; dc_h feeds C_H[h], C_M[m], C_L[l].
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    const auto& c = factors_->config();
    PEFT_REQUIRE(dY.rows() == v_.rows() && dY.cols() == c.d, "LoRTA::backward_delta: dY must be ",
                 detail::shape_str(v_.rows(), c.d), " (N x d of the last forward), got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    const Index N = dY.rows(), H = c.heads, dh = factors_->head_dim();
    const T s = factors_->scaling();
    factors_->grad(Factors::kA).noalias() += (s * dY.transpose()) * v_;
    dv_.noalias() = (s * dY) * factors_->value(Factors::kA);
    du_.resize(N * H, c.r);
    dcoeff_.setZero(H, c.r);
    for (Index n = 0; n < N; ++n)
      for (Index h = 0; h < H; ++h) {
        du_.row(n * H + h).array() = dv_.row(n).array() * coeff_.row(h).array();
        dcoeff_.row(h).array() += dv_.row(n).array() * u_.row(n * H + h).array();
      }
    const ConstMatrixMap<T> x_heads(x_.data(), N * H, dh);
    factors_->grad(Factors::kB).noalias() += du_.transpose() * x_heads;
    const auto Ch = factors_->value(Factors::kCh);
    const auto cm = factors_->value(Factors::kCm).row(type_);
    const auto cl = factors_->value(Factors::kCl).row(layer_);
    for (Index h = 0; h < H; ++h) {
      factors_->grad(Factors::kCh).row(h).array() += dcoeff_.row(h).array() * cm.array() * cl.array();
      factors_->grad(Factors::kCm).row(type_).array() += dcoeff_.row(h).array() * Ch.row(h).array() * cl.array();
      factors_->grad(Factors::kCl).row(layer_).array() += dcoeff_.row(h).array() * Ch.row(h).array() * cm.array();
    }
    if (dropped_) {
      dx_.resize(N, c.d);
      MatrixMap<T>(dx_.data(), N * H, dh).noalias() = du_ * factors_->value(Factors::kB);
      dropout_.backward(dx_);
      dX += dx_;
    } else {
      MatrixMap<T>(dX.data(), N * H, dh).noalias() += du_ * factors_->value(Factors::kB);
    }
  }

 private:
  std::shared_ptr<Factors> factors_;
  Index layer_, type_;
  Dropout<T> dropout_;
  bool training_ = true, dropped_ = false;
  Matrix<T> x_, coeff_, u_, v_, dv_, du_, dcoeff_, dx_;
};

}  // namespace peft
