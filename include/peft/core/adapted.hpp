#pragma once
// Adapted<A, Base>: a frozen layer (Linear<T> by default, or one with a
// rounded weight such as LinearBF16) plus one adapter, with forward,
// hand-written backward, and merge/unmerge for adapters that can fold into
// the weights.

#include <cstring>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/frozen_layer.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/parameters.hpp>

namespace peft {

/// The name parameters() gives a trainable base bias, as PEFT names it.
inline constexpr std::string_view kBaseBiasName = "base_layer.bias";

/// A frozen layer plus one adapter A: forward, hand-written backward into the
/// adapter's gradients, and merge/unmerge where A can fold into the weights.
/// Base is Linear<T>, or a layer with a rounded weight (RoundedFrozenLayer,
/// e.g. LinearBF16): merging into it dequantises W, folds the adapter in and
/// rounds again, so unmerge() restores W only up to that rounding (reported by
/// rounding_error(); PEFT does the same on quantised bases). Adapters that read
/// W itself (DoRA) need a Linear<T> base.
template <Adapter A, class Base = Linear<typename A::Scalar>>
  requires FrozenLayer<Base, typename A::Scalar> &&
           (is_dense_linear<Base, typename A::Scalar> || RoundedFrozenLayer<Base, typename A::Scalar>) &&
           (!UsesBase<A> || is_dense_linear<Base, typename A::Scalar>)
class Adapted {
 public:
  using Scalar = typename A::Scalar;  ///< element type, the adapter's
  using T = Scalar;                   ///< short for Scalar
  using BaseLayer = Base;             ///< the frozen layer's type

  /// Throws peft::Error unless the adapter's d_in x d_out match the base layer's.
  Adapted(Base base, A adapter) : base_(std::move(base)), adapter_(std::move(adapter)) {
    PEFT_REQUIRE(adapter_.in_features() == base_.in_features() && adapter_.out_features() == base_.out_features(),
                 "Adapted: adapter is ", detail::shape_str(adapter_.out_features(), adapter_.in_features()),
                 " (d_out x d_in) but the base layer is ",
                 detail::shape_str(base_.out_features(), base_.in_features()));
    bind_base();
  }

  /// Y = output_edit(base(input_edit(X)) + Δ(input_edit(X))), or the merged
  /// base alone once merged.
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    PEFT_REQUIRE(X.cols() == base_.in_features(), "Adapted::forward: X must have in_features = ",
                 base_.in_features(), " columns, got ", detail::shape_str(X.rows(), X.cols()));
    rows_ = -1;  // invalid until this forward completes
    bind_base();
    if (merged_) {
      base_.forward(X, Y);
      return;
    }
    const ConstMatrixRef<T> input = edit_input(X);
    base_.forward(input, Y);
    if constexpr (AddsDelta<A>) adapter_.forward_delta(input, Y);
    if constexpr (EditsOutput<A>)
      if (output_edit_active(adapter_)) adapter_.forward_output(Y);
    rows_ = X.rows();
  }
  /// Y returned (N x d_out); throws peft::Error unless X has in_features() columns.
  Matrix<T> forward(const ConstMatrixRef<T>& X) {
    Matrix<T> Y;
    forward(X, Y);
    return Y;
  }

  /// Inference: what forward computes in eval mode (no dropout), from a const
  /// layer that keeps nothing, so several threads may call it at once on one
  /// layer (while nothing changes the layer). Working memory is per thread and
  /// reused; no backward follows it. Throws peft::Error unless X has
  /// in_features() columns.
  void infer(const ConstMatrixRef<T>& X, Matrix<T>& Y) const
    requires Infers<A>
  {
    PEFT_REQUIRE(X.cols() == base_.in_features(), "Adapted::infer: X must have in_features = ", base_.in_features(),
                 " columns, got ", detail::shape_str(X.rows(), X.cols()));
    if (merged_) {
      base_.forward(X, Y);
      return;
    }
    detail::infer_through(adapter_, base_, X, Y);
  }
  /// Y returned (N x d_out); see infer(X, Y).
  Matrix<T> infer(const ConstMatrixRef<T>& X) const
    requires Infers<A>
  {
    Matrix<T> Y;
    infer(X, Y);
    return Y;
  }

  /// dX for the upstream gradient dY of the last forward; adds into the
  /// adapter's parameter gradients. Once per forward: a second call would add
  /// the same gradients twice, so it throws.
  void backward(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(!merged_, "Adapted::backward: the adapter is merged into the base; call unmerge() before training");
    PEFT_REQUIRE(rows_ >= 0, "Adapted::backward: called before forward, or twice for one forward; expected one "
                 "forward before each backward");
    PEFT_REQUIRE(dY.rows() == rows_ && dY.cols() == base_.out_features(),
                 "Adapted::backward: dY must be N x out_features = ", detail::shape_str(rows_, base_.out_features()),
                 " like the last forward's output, got ", detail::shape_str(dY.rows(), dY.cols()));
    bind_base();
    const ConstMatrixRef<T> dH = output_edit_backward(dY);
    if (bias_trainable_) {
      // b enters after an edit that passes it through (DoRA): its gradient is dY.
      if (output_edit_passes_bias(adapter_)) bias_grad_.noalias() += dY.colwise().sum().transpose();
      else bias_grad_.noalias() += dH.colwise().sum().transpose();
    }
    base_.backward(dH, dX);
    if constexpr (AddsDelta<A>) adapter_.backward_delta(dH, dX);
    if constexpr (EditsInput<A>)
      if (input_edit_active(adapter_)) adapter_.backward_input(dX);
    rows_ = -1;  // the gradients are in: another backward would add them again
  }
  /// dX returned (N x d_in). Throws peft::Error when merged, when no forward came
  /// since construction, the last (un)merge or the last backward, or unless dY
  /// is N x out_features().
  Matrix<T> backward(const ConstMatrixRef<T>& dY) {
    Matrix<T> dX;
    backward(dY, dX);
    return dX;
  }

  /// Folds the adapter into the base weights: afterwards forward costs what
  /// the frozen layer costs. Only at eval time: dropout is not part of ΔW.
  /// Parameters holding NaN or Inf are always refused (nothing changes). With
  /// safe_merge (PEFT's option) a merge whose finite parameters would still
  /// leave a NaN or Inf in the weights throws too and leaves the base as it was.
  void merge(bool safe_merge = false)
    requires Mergeable<A>
  {
    PEFT_REQUIRE(!merged_, "Adapted::merge: already merged; call unmerge() first");
    // A NaN or Inf merged into W could never be subtracted out again: refused
    // whatever safe_merge says (safe_merge also catches finite values that overflow).
    for (const auto& p : adapter_.parameters())
      PEFT_REQUIRE(p.value.allFinite(), "Adapted::merge: parameter '", p.name,
                   "' holds NaN or Inf; expected finite values (merging would corrupt the base weights for good)");
    auto refuse_non_finite = [] {
      ::peft::detail::raise("Adapted::merge: the merged weights would hold NaN or Inf (safe_merge); the adapter's "
                            "parameters are not finite, base left unchanged");
    };
    bind_base();
    if constexpr (is_dense_linear<Base, T>) {
      std::optional<Linear<T>> before;
      if (safe_merge) before = base_;
      fold_in(base_);
      if (safe_merge && !finite(base_)) {
        base_ = std::move(*before);
        refuse_non_finite();
      }
    } else {
      // The check follows the rounding: a finite sum may still round to inf.
      std::optional<Base> before;
      const RoundingError previous = rounding_error_;
      if (safe_merge) before = base_;
      Linear<T> dense = base_.dequantised();
      fold_in(dense);
      write_rounded(dense);
      if (safe_merge && !(base_.all_finite() && base_.bias().allFinite())) {
        base_ = std::move(*before);
        rounding_error_ = previous;
        refuse_non_finite();
      }
    }
    merged_values_ = snapshot();
    merged_ = true;
    rows_ = -1;
  }

  /// Restores the base weights. The adapter's parameters must not have changed
  /// since merge(), or the subtraction would not restore the original weights.
  void unmerge()
    requires Mergeable<A>
  {
    PEFT_REQUIRE(merged_, "Adapted::unmerge: not merged");
    const std::vector<T> now = snapshot();  // compared bitwise: operator== would call NaN changed
    PEFT_REQUIRE(now.size() == merged_values_.size() &&
                     std::memcmp(now.data(), merged_values_.data(), now.size() * sizeof(T)) == 0,
                 "Adapted::unmerge: the adapter's parameters changed while merged; unmerging would not restore the "
                 "base weights");
    bind_base();
    if constexpr (is_dense_linear<Base, T>) {
      fold_out(base_);
    } else {
      Linear<T> dense = base_.dequantised();
      fold_out(dense);
      write_rounded(dense);
    }
    merged_ = false;
    merged_values_.clear();
    rows_ = -1;
  }

  bool merged() const { return merged_; }  ///< whether the adapter is folded into base()

  /// How far rounding moved W in the last merge() or unmerge() on a rounded
  /// base (zero for a Linear<T> base, whose merge is exact up to float addition).
  RoundingError rounding_error() const { return rounding_error_; }

  /// PEFT's bias = "lora_only" / "all": the base layer's bias b becomes a
  /// trainable parameter, "base_layer.bias" in parameters(), whose value is
  /// base().bias() itself (so it is saved and merged with the base). Throws
  /// peft::Error if the base layer has no bias.
  void set_base_bias_trainable(bool trainable) {
    PEFT_REQUIRE(!trainable || base_.has_bias(), "Adapted::set_base_bias_trainable: the base layer has no bias; "
                 "expected a base layer with ", base_.out_features(), " bias entries");
    bias_trainable_ = trainable;
    bias_grad_ = Vector<T>::Zero(trainable ? base_.out_features() : 0);
    bias_shape_ = {base_.out_features()};
  }
  bool base_bias_trainable() const { return bias_trainable_; }  ///< whether base().bias() is trained

  /// Every trainable tensor: the adapter's views, then "base_layer.bias"
  /// (1 x d_out) when the base bias is trainable.
  std::vector<Parameter<T>> parameters() {
    std::vector<Parameter<T>> views = adapter_.parameters();
    if (bias_trainable_)
      views.push_back({kBaseBiasName, bias_shape_, MatrixMap<T>(base_.bias().data(), 1, base_.out_features()),
                       MatrixMap<T>(bias_grad_.data(), 1, base_.out_features())});
    return views;
  }
  /// Sets every gradient of parameters() to 0.
  void zero_grad() {
    adapter_.zero_grad();
    bias_grad_.setZero();
  }
  /// Trainable scalars: the adapter's, plus d_out for a trainable base bias.
  Index num_params() const { return adapter_.num_params() + bias_grad_.size(); }

  /// Training mode (the default) applies the adapter's dropout; eval does not.
  void set_training(bool training) {
    if constexpr (HasTrainingMode<A>) adapter_.set_training(training);
  }
  /// The adapter's random generators (dropout masks; none for most adapters),
  /// for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() {
    if constexpr (HasRandomStreams<A>) return adapter_.random_streams();
    else return {};
  }

  /// The frozen layer (holding the merged weights while merged()).
  ///@{
  Base& base() { return base_; }
  const Base& base() const { return base_; }
  ///@}
  /// The adapter: its parameters, gradients and config.
  ///@{
  A& adapter() { return adapter_; }
  const A& adapter() const { return adapter_; }
  ///@}

  Index in_features() const { return base_.in_features(); }    ///< d_in
  Index out_features() const { return base_.out_features(); }  ///< d_out

  /// Flops of forward + backward of the whole adapted layer for N rows.
  double flops(Index N) const { return base_.flops(N) + adapter_.flops(N); }

 private:
  /// Points an adapter that reads W or b (UsesBase) at base_, wherever this
  /// layer lives now (it may have moved since the last call).
  void bind_base() {
    if constexpr (UsesBase<A>) adapter_.use_base(base_);
  }

  /// Folds the adapter into a dense layer (merge) or takes it out (unmerge).
  ///@{
  void fold_in(Linear<T>& dense) {
    if constexpr (MergesItself<A>) adapter_.merge_into(dense);
    else dense.weight() += adapter_.delta_weight();
  }
  void fold_out(Linear<T>& dense) {
    if constexpr (MergesItself<A>) adapter_.unmerge_from(dense);
    else dense.weight() -= adapter_.delta_weight();
  }
  ///@}
  static bool finite(const Linear<T>& dense) { return dense.weight().allFinite() && dense.bias().allFinite(); }

  /// A rounded base takes the merged dense layer's W (rounded) and its bias.
  void write_rounded(const Linear<T>& dense) {
    rounding_error_ = base_.assign_rounded(dense.weight());
    base_.bias() = dense.bias();
  }

  /// The input the base sees: X, or a copy edited by the adapter.
  ConstMatrixRef<T> edit_input(const ConstMatrixRef<T>& X) {
    if constexpr (EditsInput<A>) {
      if (input_edit_active(adapter_)) {
        x_edited_ = X;
        adapter_.forward_input(x_edited_);
        return x_edited_;
      }
    }
    return X;
  }

  /// The gradient at the base's output: dY, or dY routed back through the
  /// adapter's output edit.
  ConstMatrixRef<T> output_edit_backward(const ConstMatrixRef<T>& dY) {
    if constexpr (EditsOutput<A>) {
      if (output_edit_active(adapter_)) {
        dH_ = dY;
        adapter_.backward_output(dH_);
        return dH_;
      }
    }
    return dY;
  }

  /// What unmerge() needs unchanged: the adapter's values and a trained bias.
  std::vector<T> snapshot() {
    std::vector<T> values;
    for (const auto& p : parameters()) values.insert(values.end(), p.value.data(), p.value.data() + p.value.size());
    return values;
  }

  Base base_;
  A adapter_;
  bool merged_ = false;
  Index rows_ = -1;  // rows of the last completed forward, -1 if backward is not allowed
  Matrix<T> x_edited_;
  Matrix<T> dH_;
  std::vector<T> merged_values_;
  bool bias_trainable_ = false;
  Vector<T> bias_grad_;            // d_out while the base bias is trainable, else empty
  std::vector<Index> bias_shape_;  // {d_out}: the view's shape (on the heap, so moves keep it)
  RoundingError rounding_error_;   // of the last merge/unmerge on a rounded base
};

}  // namespace peft
