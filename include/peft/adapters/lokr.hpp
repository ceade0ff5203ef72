#pragma once
// LoKr as Hugging Face PEFT 0.21 does it for Linear layers:
//   ΔW = s·(W1 ⊗ W2),  s = α/r,  W1: out_l x in_m,  W2: out_k x in_n,
// with (in_m, in_n) = factorization(d_in, f) and (out_l, out_k) =
// factorization(d_out, f) (PEFT's/LyCORIS's rule, below). W1 is lokr_w1, or
// lokr_w1_a·lokr_w1_b (rank r) when decompose_both and r < max(out_l, in_m)/2;
// W2 is lokr_w2, or lokr_w2_a·lokr_w2_b when r < max(out_k, in_n)/2.
// Training never forms the Kronecker product: with a row x reshaped row-major
// to X_m (in_m x in_n), the output row reshaped to out_l x out_k is
// s·W1·X_m·W2ᵀ. rank_dropout drops rows of ΔW (output features), module_dropout
// skips the adapter for a whole forward, both in training mode only.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>
#include <peft/structured/kronecker.hpp>

namespace peft {

/// PEFT's factorization(dimension, factor): (m, n) with m·n = dimension and
/// m ≤ n. With factor > 0 dividing dimension it is (factor, dimension/factor);
/// otherwise m grows through the divisors while m + n shrinks and m ≤ factor
/// (factor = −1: no bound), which lands near the square root.
inline std::pair<Index, Index> lokr_factorization(Index dimension, Index factor = -1) {
  if (factor > 0 && dimension % factor == 0) return {factor, dimension / factor};
  if (factor == -1) factor = dimension;
  Index m = 1, n = dimension;
  while (m < n) {
    Index next = m + 1;
    while (dimension % next != 0) ++next;
    const Index next_n = dimension / next;
    if (next + next_n > m + n || next > factor) break;
    m = next;
    n = next_n;
  }
  if (m > n) std::swap(m, n);
  return {m, n};
}

/// How LoKr initialises its factors (PEFT's init_weights).
enum class LoKrInit {
  Default,  ///< PEFT's init_weights=True: W1 (or W1_a) zero, the rest kaiming-uniform: ΔW = 0
  Random,   ///< init_weights=False: everything kaiming-uniform
  Lycoris,  ///< init_weights="lycoris": W2 (or W2_b) zero, the rest kaiming-uniform
};

/// LoKr's hyperparameters, named as in PEFT's LoKrConfig.
struct LoKrConfig {
  Index r = 8;                       ///< rank of a decomposed factor, >= 1; s = α/r
  double alpha = 8.0;                ///< > 0
  bool decompose_both = false;       ///< also split W1 into lokr_w1_a·lokr_w1_b when r is small enough
  Index decompose_factor = -1;       ///< f of lokr_factorization; -1: near the square root
  double rank_dropout = 0.0;         ///< drops rows of ΔW (output features) in training, in [0, 1)
  bool rank_dropout_scale = false;   ///< rescale the kept rows by the mean kept fraction
  double module_dropout = 0.0;       ///< skips the whole adapter for a forward in training, in [0, 1)
  LoKrInit init = LoKrInit::Default; ///< init_weights
  std::uint64_t seed = 0;            ///< seeds the init and the dropout draws
};

/// LoKr: ΔW = s·(W1 ⊗ W2), s = α/r, W1: out_l x in_m, W2: out_k x in_n, each a full
/// matrix or a rank-r product; trained without forming the Kronecker product.
template <class T>
class LoKr : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Throws peft::Error for non-positive sizes, r < 1, a non-finite or non-positive alpha,
  /// decompose_factor neither -1 nor positive, or a dropout outside [0, 1).
  LoKr(Index d_in, Index d_out, const LoKrConfig& config = {}) : d_in_(d_in), d_out_(d_out), config_(config), rng_(config.seed + 1) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "LoKr: d_in and d_out must be positive, got d_in = ", d_in, ", d_out = ", d_out);
    PEFT_REQUIRE(config.r >= 1, "LoKr: r must be >= 1, got ", config.r);
    PEFT_REQUIRE(config.alpha > 0.0 && std::isfinite(config.alpha), "LoKr: alpha must be a finite value > 0, got ",
                 config.alpha);
    PEFT_REQUIRE(config.decompose_factor == -1 || config.decompose_factor > 0,
                 "LoKr: decompose_factor must be -1 or positive, got ", config.decompose_factor);
    PEFT_REQUIRE(config.rank_dropout >= 0.0 && config.rank_dropout < 1.0, "LoKr: rank_dropout must be in [0, 1), got ",
                 config.rank_dropout);
    PEFT_REQUIRE(config.module_dropout >= 0.0 && config.module_dropout < 1.0,
                 "LoKr: module_dropout must be in [0, 1), got ", config.module_dropout);
    std::tie(in_m_, in_n_) = lokr_factorization(d_in, config.decompose_factor);
    std::tie(out_l_, out_k_) = lokr_factorization(d_out, config.decompose_factor);
    const double r = static_cast<double>(config.r);
    w1_full_ = !(config.decompose_both && r < static_cast<double>(std::max(out_l_, in_m_)) / 2.0);
    w2_full_ = !(r < static_cast<double>(std::max(out_k_, in_n_)) / 2.0);
    scaling_ = static_cast<T>(config.alpha / r);
    kron_ = structured::Kronecker<T>(out_l_, in_m_, out_k_, in_n_);

    if (w1_full_) w1_ = params_.add("lokr_w1", {out_l_, in_m_});
    else {
      w1_ = params_.add("lokr_w1_a", {out_l_, config.r});
      w1b_ = params_.add("lokr_w1_b", {config.r, in_m_});
    }
    if (w2_full_) w2_ = params_.add("lokr_w2", {out_k_, in_n_});
    else {
      w2_ = params_.add("lokr_w2_a", {out_k_, config.r});
      w2b_ = params_.add("lokr_w2_b", {config.r, in_n_});
    }
    initialise(config.init, config.seed);
  }

  Index in_features() const { return d_in_; }           ///< d_in
  Index out_features() const { return d_out_; }         ///< d_out
  T scaling() const { return scaling_; }                ///< s = α/r
  const LoKrConfig& config() const { return config_; }  ///< the configuration it was built with
  /// Kronecker factor shapes: W1 is out_l x in_m, W2 is out_k x in_n.
  ///@{
  std::pair<Index, Index> w1_shape() const { return {out_l_, in_m_}; }
  std::pair<Index, Index> w2_shape() const { return {out_k_, in_n_}; }
  ///@}

  /// The Kronecker factors (products of the low-rank pair where decomposed).
  ///@{
  Matrix<T> w1() const {
    Matrix<T> w;
    form_factor(w1_full_, w1_, w1b_, w);
    return w;
  }
  Matrix<T> w2() const {
    Matrix<T> w;
    form_factor(w2_full_, w2_, w2b_, w);
    return w;
  }
  ///@}

  void set_training(bool training) { training_ = training; }  ///< rank and module dropout apply only in training

  /// The rank and module dropout generator, for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() { return {&rng_}; }

  /// Matrix-product flops of forward + backward for N rows, never forming ΔW:
  /// U = X_m·W2ᵀ and W1·U forward; dX (two products), dW2 and dW1 backward.
  double flops(Index N) const {
    const double n = static_cast<double>(N);
    const double w2_side = 2.0 * n * static_cast<double>(in_m_ * in_n_ * out_k_);   // X_m·W2ᵀ, P·W2, Pᵀ·X_m
    const double w1_side = 2.0 * n * static_cast<double>(out_l_ * in_m_ * out_k_);  // W1·U, W1ᵀ·G_m, G_m·Uᵀ
    return 3.0 * w2_side + 3.0 * w1_side;
  }

  /// ΔW = s·(W1 ⊗ W2), d_out x d_in (the oracle and the merge; never used in training).
  Matrix<T> delta_weight() const { return scaling_ * structured::kronecker_dense<T>(w1(), w2()); }

  /// Y += s·(W1 ⊗ W2) applied to X as forward_delta in eval mode (no module
  /// or rank dropout), keeping nothing (const: several threads may call it at once).
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("LoKr::infer_delta", X, Y, d_in_, d_out_);
    Matrix<T>& f1 = thread_matrix<LoKr, T, 0>(out_l_, in_m_);
    Matrix<T>& f2 = thread_matrix<LoKr, T, 1>(out_k_, in_n_);
    form_factor(w1_full_, w1_, w1b_, f1);
    form_factor(w2_full_, w2_, w2b_, f2);
    kron_.apply(f1, f2, scaling_, X, Y);
  }

  /// Y += s·rows of W1·X_m·W2ᵀ, one Kronecker product per row of X.
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("LoKr::forward_delta", X, Y, d_in_, d_out_);
    rows_ = X.rows();
    skipped_ = training_ && config_.module_dropout > 0.0 && !(rng_.uniform() > config_.module_dropout);
    if (skipped_) return;
    form_factor(w1_full_, w1_, w1b_, w1_value_);  // into kept matrices: training steps allocate nothing
    form_factor(w2_full_, w2_, w2b_, w2_value_);
    kron_.forward(w1_value_, w2_value_, scaling_, X, delta_);
    draw_rank_mask();
    if (masked_) delta_.array().rowwise() *= mask_.array();
    Y += delta_;
  }

  /// Through the Kronecker kernel with dY masked by rank dropout; decomposed
  /// factors take the chain rule through their product.
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(rows_ == dY.rows() && dY.cols() == d_out_, "LoKr::backward_delta: dY must be ",
                 detail::shape_str(rows_, d_out_), " (N x d_out of the last forward), got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    if (skipped_) return;
    if (masked_) {
      g_ = dY.array().rowwise() * mask_.array();
      kron_.backward(g_, dX, gw1_, gw2_);
    } else {
      kron_.backward(dY, dX, gw1_, gw2_);
    }
    accumulate_factor_grad(w1_full_, w1_, w1b_, gw1_);
    accumulate_factor_grad(w2_full_, w2_, w2b_, gw2_);
  }

 private:
  /// w = the factor: parameter `full` itself, or the product of the pair (a, b).
  void form_factor(bool full, Index a, Index b, Matrix<T>& w) const {
    if (full) w = params_.value(a);
    else w.noalias() = params_.value(a) * params_.value(b);
  }

  void initialise(LoKrInit how, std::uint64_t seed) {
    Rng rng(seed);
    const double a = std::sqrt(5.0);
    auto kaiming = [&](Index i) { init::kaiming_uniform(params_.value(i), params_.value(i).cols(), a, rng); };
    // W1 side
    if (how == LoKrInit::Default) {
      if (!w1_full_) kaiming(w1b_);  // w1_a (or w1) stays zero
    } else {
      kaiming(w1_);
      if (!w1_full_) kaiming(w1b_);
    }
    // W2 side
    if (how == LoKrInit::Lycoris) {
      if (!w2_full_) kaiming(w2_);  // w2_b (or w2) stays zero
    } else {
      kaiming(w2_);
      if (!w2_full_) kaiming(w2b_);
    }
  }

  /// dW of a factor into its parameter(s): W = W_a·W_b gives dW_a = dW·W_bᵀ, dW_b = W_aᵀ·dW.
  void accumulate_factor_grad(bool full, Index a, Index b, const Matrix<T>& dW) {
    if (full) {
      params_.grad(a) += dW;
    } else {
      params_.grad(a).noalias() += dW * params_.value(b).transpose();
      params_.grad(b).noalias() += params_.value(a).transpose() * dW;
    }
  }

  /// Rank dropout keeps each output feature (row of ΔW) with probability 1 − p,
  /// optionally rescaled by the mean kept fraction, as PEFT does.
  void draw_rank_mask() {
    masked_ = training_ && config_.rank_dropout > 0.0;
    if (!masked_) return;
    mask_.resize(d_out_);
    for (Index i = 0; i < d_out_; ++i) mask_[i] = rng_.uniform() > config_.rank_dropout ? T(1) : T(0);
    if (config_.rank_dropout_scale && mask_.sum() > T(0)) mask_ /= mask_.mean();
  }

  Index d_in_, d_out_;
  LoKrConfig config_;
  Rng rng_;  // dropout draws
  Index in_m_ = 1, in_n_ = 1, out_l_ = 1, out_k_ = 1;
  bool w1_full_ = true, w2_full_ = true;
  Index w1_ = -1, w1b_ = -1, w2_ = -1, w2b_ = -1;
  T scaling_{};
  bool training_ = true, skipped_ = false, masked_ = false;
  Index rows_ = -1;
  structured::Kronecker<T> kron_;
  Eigen::Matrix<T, 1, Eigen::Dynamic> mask_;  // rank dropout over output features
  Matrix<T> delta_, g_, gw1_, gw2_, w1_value_, w2_value_;
};

}  // namespace peft
