#pragma once
// IA3 as Hugging Face PEFT 0.21 does it: one learned vector ia3_l that scales
//   the output of the layer,  Y = (X·W0ᵀ + b) ⊙ l,  ia3_l: [d_out, 1] (bias scaled too)
//   or, for feed-forward modules, its input,  Y = (X ⊙ l)·W0ᵀ + b,  ia3_l: [1, d_in].
// Init: ones (PEFT's init_ia3_weights=True, the identity) or N(0, 1) (False).
// Merge: W ← diag(l)·W, b ← l ⊙ b, or W ← W·diag(l). Unmerge divides exactly
// (PEFT divides by l + 1e-8, which is not exact) and refuses if some l = 0.

#include <cstdint>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// IA3's options, as PEFT's IA3Config for one module.
struct IA3Config {
  bool feedforward = false;  ///< scale the input (feed-forward module) instead of the output
  bool init_ones = true;     ///< PEFT's init_ia3_weights: ones; false draws N(0, 1)
  std::uint64_t seed = 0;    ///< seeds the N(0, 1) init
};

/// IA3: one learned vector l scales the layer's output, Y = (X·W0ᵀ + b) ⊙ l
/// (ia3_l: d_out x 1), or for feed-forward modules its input, Y = (X ⊙ l)·W0ᵀ + b (1 x d_in).
template <class T>
class IA3 : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Throws peft::Error for non-positive sizes.
  IA3(Index d_in, Index d_out, const IA3Config& config = {}) : d_in_(d_in), d_out_(d_out), config_(config) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "IA3: d_in and d_out must be positive, got d_in = ", d_in, ", d_out = ", d_out);
    params_.add("ia3_l", config.feedforward ? std::vector<Index>{1, d_in} : std::vector<Index>{d_out, 1});
    if (config.init_ones) {
      l().setOnes();
    } else {
      Rng rng(config.seed);
      init::normal(l(), 1.0, rng);
    }
  }

  Index in_features() const { return d_in_; }                 ///< d_in
  Index out_features() const { return d_out_; }               ///< d_out
  const IA3Config& config() const { return config_; }         ///< the configuration it was built with
  bool edits_input() const { return config_.feedforward; }    ///< whether l scales the input (feedforward)
  bool edits_output() const { return !config_.feedforward; }  ///< whether l scales the output

  /// ia3_l as PEFT shapes it: d_out x 1, or 1 x d_in for feed-forward modules.
  ///@{
  MatrixMap<T> l() { return params_.value(0); }
  ConstMatrixMap<T> l() const { return params_.value(0); }
  ///@}

  /// Elementwise flops for N rows: one scaling forward, a product-reduction
  /// and a scaling backward.
  double flops(Index N) const {
    return 3.0 * static_cast<double>(N) * static_cast<double>(config_.feedforward ? d_in_ : d_out_);
  }

  /// Feed-forward: X ← X ⊙ lᵀ (row-broadcast); keeps X for dl.
  void forward_input(Matrix<T>& X) { scale_rows(X, "IA3::forward_input", d_in_); }
  /// dl += Σ_n dX' ⊙ X, dX = dX' ⊙ l.
  void backward_input(Matrix<T>& dX) { scale_rows_backward(dX, "IA3::backward_input"); }
  /// Output scaling: H ← H ⊙ lᵀ; keeps H for dl.
  void forward_output(Matrix<T>& H) { scale_rows(H, "IA3::forward_output", d_out_); }
  /// dl += Σ_n dH' ⊙ H, dH = dH' ⊙ l.
  void backward_output(Matrix<T>& dH) { scale_rows_backward(dH, "IA3::backward_output"); }

  /// forward_input's scaling keeping nothing (const: several threads may call it at once).
  void infer_input(Matrix<T>& X) const { scale_only(X, "IA3::infer_input", d_in_); }
  /// forward_output's scaling keeping nothing (const: several threads may call it at once).
  void infer_output(Matrix<T>& H) const { scale_only(H, "IA3::infer_output", d_out_); }

  /// W ← diag(l)·W and b ← l ⊙ b, or W ← W·diag(l) (feedforward); throws peft::Error if l is not finite.
  void merge_into(Linear<T>& base) {
    PEFT_REQUIRE(l().allFinite(), "IA3::merge_into: ia3_l must be finite");
    if (config_.feedforward) {
      base.weight().array().rowwise() *= l().row(0).array();
    } else {
      base.weight().array().colwise() *= l().col(0).array();
      if (base.has_bias()) base.bias().array() *= l().col(0).array();
    }
  }

  /// Divides the merge back out exactly; throws peft::Error if some l = 0.
  void unmerge_from(Linear<T>& base) {
    PEFT_REQUIRE((l().array() != T(0)).all(), "IA3::unmerge_from: ia3_l has a zero entry, so the merge cannot be undone");
    if (config_.feedforward) {
      base.weight().array().rowwise() /= l().row(0).array();
    } else {
      base.weight().array().colwise() /= l().col(0).array();
      if (base.has_bias()) base.bias().array() /= l().col(0).array();
    }
  }

 private:
  /// The scale as a row vector whatever PEFT's shape is.
  using Row = Eigen::Matrix<T, 1, Eigen::Dynamic>;
  auto l_row() const { return Eigen::Map<const Row>(params_.values().data(), params_.num_params()); }
  auto l_grad_row() { return Eigen::Map<Row>(params_.grads().data(), params_.num_params()); }

  void scale_rows(Matrix<T>& M, const char* who, Index width) {
    PEFT_REQUIRE(M.cols() == width, who, ": expected ", width, " columns, got ", detail::shape_str(M.rows(), M.cols()));
    saved_.resize(M.rows(), M.cols());
    for (Index r = 0; r < M.rows(); ++r) {  // one pass: each row kept and scaled while in L1
      saved_.row(r) = M.row(r);
      M.row(r).array() *= l_row().array();
    }
  }

  void scale_only(Matrix<T>& M, const char* who, Index width) const {
    PEFT_REQUIRE(M.cols() == width, who, ": expected ", width, " columns, got ", detail::shape_str(M.rows(), M.cols()));
    M.array().rowwise() *= l_row().array();
  }

  void scale_rows_backward(Matrix<T>& dM, const char* who) {
    PEFT_REQUIRE(dM.rows() == saved_.rows() && dM.cols() == saved_.cols(), who, ": gradient must be ",
                 detail::shape_str(saved_.rows(), saved_.cols()), " like the last forward, got ",
                 detail::shape_str(dM.rows(), dM.cols()));
    for (Index r = 0; r < dM.rows(); ++r) {  // one pass: the batch sum, then the scale
      l_grad_row().array() += dM.row(r).array() * saved_.row(r).array();
      dM.row(r).array() *= l_row().array();
    }
  }

  Index d_in_, d_out_;
  IA3Config config_;
  Matrix<T> saved_;  // the input (feed-forward) or output (otherwise) before scaling
};

}  // namespace peft
