#pragma once
// MultiAdapted<T, Base>: one frozen layer shared by several named adapters of
// any kinds (PEFT's add_adapter / set_adapter / delete_adapter /
// disable_adapter), run one set at a time or as a mixed batch whose rows each
// pick their own adapter.
//
// Several active adapters compose as one Adapted would with each in turn:
// their input edits apply in activation order, the base and every additive
// adapter see the edited input, the deltas add up, then the output edits
// apply in activation order. For LoRA-like adapters this is PEFT's sum of the
// active adapters' deltas.
//
// A mixed batch (forward(X, row_adapter)) runs the base once on all rows and
// each adapter once on its own rows, gathered into one contiguous block (used
// in place when they already are), so each adapter runs its batched kernels
// (LoRA's thin GEMMs, one batched FFT pass for a structured adapter) once.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <peft/core/adapted_layer.hpp>
#include <peft/core/adapter.hpp>
#include <peft/core/adapter_combination.hpp>
#include <peft/core/error.hpp>
#include <peft/core/frozen_layer.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// A frozen layer (held once, by shared ownership) with named adapters.
/// Gradients go to the adapters that ran in the last forward only.
template <class T, class Base = Linear<T>>
  requires FrozenLayer<Base, T>
class MultiAdapted {
 public:
  using Scalar = T;        ///< element type
  using BaseLayer = Base;  ///< the frozen layer's type

  /// Takes the base layer; copies of this object's base() are never made.
  explicit MultiAdapted(Base base) : base_(std::make_shared<Base>(std::move(base))) {}
  /// Shares a base held elsewhere (several MultiAdapted or Adapted-free code
  /// reading one weight). Throws peft::Error for a null pointer.
  explicit MultiAdapted(std::shared_ptr<Base> base) : base_(std::move(base)) {
    PEFT_REQUIRE(base_ != nullptr, "MultiAdapted: expected a base layer, got a null pointer");
  }

  MultiAdapted(const MultiAdapted&) = delete;  // adapters hold caches and gradients: move only
  MultiAdapted& operator=(const MultiAdapted&) = delete;
  /// Moves the base pointer and the adapters (a DisabledAdapters guard must not outlive the move).
  ///@{
  MultiAdapted(MultiAdapted&&) noexcept = default;
  MultiAdapted& operator=(MultiAdapted&&) noexcept = default;
  ///@}

  /// Adds `adapter` under `name` (not active until set_adapter) and returns
  /// it. Throws peft::Error for an empty or taken name, or an adapter whose
  /// d_in x d_out differ from the base's.
  template <Adapter A>
    requires std::same_as<typename A::Scalar, T> && (!UsesBase<A> || is_dense_linear<Base, T>)
  A& add_adapter(std::string name, A adapter) {
    PEFT_REQUIRE(!name.empty(), "MultiAdapted::add_adapter: expected a non-empty adapter name");
    PEFT_REQUIRE(find(name) < 0, "MultiAdapted::add_adapter: an adapter named '", name,
                 "' exists already; expected a new name (delete_adapter first to replace it)");
    PEFT_REQUIRE(adapter.in_features() == base_->in_features() && adapter.out_features() == base_->out_features(),
                 "MultiAdapted::add_adapter: adapter '", name, "' is ",
                 detail::shape_str(adapter.out_features(), adapter.in_features()),
                 " (d_out x d_in); expected the base layer's ",
                 detail::shape_str(base_->out_features(), base_->in_features()));
    auto slot = std::make_unique<Slot<A>>(std::move(name), std::move(adapter));
    A& added = slot->adapter;
    slots_.push_back(std::move(slot));
    invalidate();
    return added;
  }

  /// Removes an adapter (and from the active set). Throws peft::Error for an unknown name.
  void delete_adapter(const std::string& name) {
    const Index i = require(name, "delete_adapter");
    SlotBase* s = slots_[static_cast<std::size_t>(i)].get();
    PEFT_REQUIRE(std::find(merged_.begin(), merged_.end(), s) == merged_.end(), "MultiAdapted::delete_adapter: '",
                 name, "' is merged into the base; call unmerge() first");
    std::erase(active_, s);
    slots_.erase(slots_.begin() + i);
    invalidate();
  }

  /// The adapters' names in the order they were added: row_adapter indexes this list.
  std::vector<std::string> adapter_names() const {
    std::vector<std::string> names;
    for (const auto& s : slots_) names.push_back(s->name);
    return names;
  }
  /// The position of `name` in adapter_names(), for row_adapter; throws peft::Error if unknown.
  int index_of(const std::string& name) const { return static_cast<int>(require(name, "index_of")); }

  /// Makes one adapter, or several (their effects compose, see the header),
  /// the active set; an empty list runs the base alone. Throws peft::Error
  /// for an unknown or repeated name, or for an adapter that reads the base's
  /// weights (DoRA) together with others.
  ///@{
  void set_adapter(const std::string& name) { set_adapter(std::vector<std::string>{name}); }
  void set_adapter(std::initializer_list<std::string> names) { set_adapter(std::vector<std::string>(names)); }
  void set_adapter(const std::vector<std::string>& names) {
    active_ = resolve(names, "set_adapter");
    invalidate();
  }
  ///@}
  /// The active adapters' names, in activation order.
  std::vector<std::string> active_adapters() const { return names_of(active_); }

  /// While alive, the layer runs its base alone; on destruction the active
  /// set it found comes back (less adapters deleted meanwhile).
  class [[nodiscard]] DisabledAdapters {
   public:
    /// Runs `layer` on its base alone until this guard is destroyed.
    explicit DisabledAdapters(MultiAdapted& layer) : layer_(&layer), previous_(layer.active_adapters()) {
      layer.set_adapter(std::vector<std::string>{});
    }
    DisabledAdapters(const DisabledAdapters&) = delete;
    DisabledAdapters& operator=(const DisabledAdapters&) = delete;
    ~DisabledAdapters() {
      std::vector<std::string> still_there;
      for (auto& n : previous_)
        if (layer_->find(n) >= 0) still_there.push_back(std::move(n));
      layer_->set_adapter(still_there);
    }

   private:
    MultiAdapted* layer_;
    std::vector<std::string> previous_;
  };
  /// PEFT's disable_adapter() context: the base alone until the guard goes.
  DisabledAdapters disable_adapters() { return DisabledAdapters(*this); }

  /// The adapter `name` as an A. Throws peft::Error for an unknown name or another type.
  ///@{
  template <class A>
  A& adapter(const std::string& name) {
    return *static_cast<A*>(require_type(name, typeid(A)));
  }
  template <class A>
  const A& adapter(const std::string& name) const {
    return *static_cast<const A*>(require_type(name, typeid(A)));
  }
  ///@}

  /// The adapter `name` as an A, or nullptr when it is of another type.
  /// Throws peft::Error for an unknown name.
  template <class A>
  A* find_adapter(const std::string& name) {
    return static_cast<A*>(slots_[static_cast<std::size_t>(require(name, "find_adapter"))]->address(typeid(A)));
  }

  /// What io needs to save adapter `name` (pointers into this layer, valid
  /// while it lives and the adapter is not deleted). Throws peft::Error for an unknown name.
  AdapterState<T> state(const std::string& name) const {
    return slots_[static_cast<std::size_t>(require(name, "state"))]->state(*base_);
  }

  /// Y = the base plus the active adapters (N x d_out). Throws peft::Error
  /// unless X has in_features() columns.
  ///@{
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    check_input("forward", X);
    invalidate();
    for (SlotBase* s : active_)  // the active adapters not merged into the base
      if (std::find(merged_.begin(), merged_.end(), s) == merged_.end()) ran_.push_back(s);
    bind_base(ran_);
    const bool edits = any_of(ran_, &SlotBase::edits_input);
    if (edits) {
      batch_.x_edited = X;
      for (SlotBase* s : ran_)
        if (s->edits_input()) s->forward_input(batch_.x_edited);
    }
    const ConstMatrixRef<T> input = edits ? ConstMatrixRef<T>(batch_.x_edited) : X;
    base_->forward(input, Y);
    for (SlotBase* s : ran_)
      if (s->adds_delta()) s->forward_delta(input, Y);
    for (SlotBase* s : ran_)
      if (s->edits_output()) s->forward_output(Y);
    last_ = Mode::active;
    rows_ = X.rows();
  }
  Matrix<T> forward(const ConstMatrixRef<T>& X) {
    Matrix<T> Y;
    forward(X, Y);
    return Y;
  }
  ///@}

  /// A mixed batch: row i runs the base plus adapter row_adapter[i] (an
  /// index into adapter_names()), or the base alone for −1; the active set
  /// is not used. Throws peft::Error unless X has in_features() columns and
  /// row_adapter one entry per row, each in [−1, number of adapters).
  ///@{
  void forward(const ConstMatrixRef<T>& X, std::span<const int> row_adapter, Matrix<T>& Y) {
    check_input("forward", X);
    PEFT_REQUIRE(static_cast<Index>(row_adapter.size()) == X.rows(), "MultiAdapted::forward: expected ", X.rows(),
                 " row_adapter entries (one per row of X), got ", row_adapter.size());
    PEFT_REQUIRE(merged_.empty(), "MultiAdapted::forward: adapters [", joined(merged_),
                 "] are merged into the base, which every row of a mixed batch would get; call unmerge() first");
    invalidate();
    group_rows(batch_, row_adapter, "forward");
    for (const Group* g : batch_.order) ran_.push_back(&slot(*g));
    bind_base(ran_);

    const bool edits = any_of(ran_, &SlotBase::edits_input);
    if (edits) {
      batch_.x_edited = X;
      for (const Group* g : batch_.order)
        if (slot(*g).edits_input()) edit_rows(batch_, *g, batch_.x_edited, [&](Matrix<T>& m) { slot(*g).forward_input(m); });
    }
    const ConstMatrixRef<T> input = edits ? ConstMatrixRef<T>(batch_.x_edited) : X;
    base_->forward(input, Y);
    add_group_deltas(batch_, input, Y, [](SlotBase& s, const ConstMatrixRef<T>& in, Matrix<T>& out) { s.forward_delta(in, out); });
    for (const Group* g : batch_.order)
      if (slot(*g).edits_output()) edit_rows(batch_, *g, Y, [&](Matrix<T>& m) { slot(*g).forward_output(m); });
    last_ = Mode::mixed;
    rows_ = X.rows();
  }
  Matrix<T> forward(const ConstMatrixRef<T>& X, std::span<const int> row_adapter) {
    Matrix<T> Y;
    forward(X, row_adapter, Y);
    return Y;
  }
  ///@}

  /// Inference: forward(X, Y) in eval mode (no dropout) from a const layer
  /// that keeps nothing, so several threads may call it at once on one layer
  /// (while nothing changes the layer). Working memory is per thread and
  /// reused; no backward follows it. Throws peft::Error unless X has
  /// in_features() columns, or for an adapter kind without infer_* members.
  ///@{
  void infer(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    check_input("infer", X);
    thread_local std::vector<SlotBase*> running;
    running.clear();
    for (SlotBase* s : active_)  // the active adapters not merged into the base
      if (std::find(merged_.begin(), merged_.end(), s) == merged_.end()) running.push_back(require_infers(*s));
    const bool edits = any_of(running, &SlotBase::edits_input);
    Matrix<T>* edited = nullptr;
    if (edits) {
      edited = &thread_matrix<Batch, T>(X.rows(), X.cols());
      *edited = X;
      for (const SlotBase* s : running)
        if (s->edits_input()) s->infer_input(*edited);
    }
    const ConstMatrixRef<T> input = edits ? ConstMatrixRef<T>(*edited) : X;
    base_->forward(input, Y);
    for (const SlotBase* s : running)
      if (s->adds_delta()) s->infer_delta(input, Y);
    for (const SlotBase* s : running)
      if (s->edits_output()) s->infer_output(*base_, Y);
  }
  Matrix<T> infer(const ConstMatrixRef<T>& X) const {
    Matrix<T> Y;
    infer(X, Y);
    return Y;
  }
  ///@}

  /// Inference on a mixed batch: forward(X, row_adapter, Y) with infer's
  /// guarantees (const, nothing kept, several threads at once). Throws as
  /// that forward does, or for an adapter kind without infer_* members.
  ///@{
  void infer(const ConstMatrixRef<T>& X, std::span<const int> row_adapter, Matrix<T>& Y) const {
    check_input("infer", X);
    PEFT_REQUIRE(static_cast<Index>(row_adapter.size()) == X.rows(), "MultiAdapted::infer: expected ", X.rows(),
                 " row_adapter entries (one per row of X), got ", row_adapter.size());
    PEFT_REQUIRE(merged_.empty(), "MultiAdapted::infer: adapters [", joined(merged_),
                 "] are merged into the base, which every row of a mixed batch would get; call unmerge() first");
    thread_local Batch batch;
    group_rows(batch, row_adapter, "infer");
    bool edits = false;
    for (const Group* g : batch.order) edits = require_infers(slot(*g))->edits_input() || edits;
    if (edits) {
      batch.x_edited = X;
      for (const Group* g : batch.order)
        if (slot(*g).edits_input()) edit_rows(batch, *g, batch.x_edited, [&](Matrix<T>& m) { slot(*g).infer_input(m); });
    }
    const ConstMatrixRef<T> input = edits ? ConstMatrixRef<T>(batch.x_edited) : X;
    base_->forward(input, Y);
    add_group_deltas(batch, input, Y,
                     [](const SlotBase& s, const ConstMatrixRef<T>& in, Matrix<T>& out) { s.infer_delta(in, out); });
    for (const Group* g : batch.order)
      if (slot(*g).edits_output()) edit_rows(batch, *g, Y, [&](Matrix<T>& m) { slot(*g).infer_output(*base_, m); });
  }
  Matrix<T> infer(const ConstMatrixRef<T>& X, std::span<const int> row_adapter) const {
    Matrix<T> Y;
    infer(X, row_adapter, Y);
    return Y;
  }
  ///@}

  /// dX (N x d_in) for the last forward's dY; each row's gradient goes to the
  /// adapter that ran on it (adds into its gradients). Once per forward.
  /// Throws peft::Error before a forward, for a second backward on one
  /// forward, after the adapters changed since it, or unless dY is N x out_features().
  ///@{
  void backward(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(last_ != Mode::none, "MultiAdapted::backward: expected a forward first (one backward per forward, "
                 "and no add_adapter, delete_adapter, set_adapter or merge since)");
    PEFT_REQUIRE(dY.rows() == rows_ && dY.cols() == base_->out_features(), "MultiAdapted::backward: dY must be ",
                 detail::shape_str(rows_, base_->out_features()), " like the last forward's output, got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    bind_base(ran_);
    if (last_ == Mode::active) backward_active(dY, dX);
    else backward_mixed(dY, dX);
    invalidate();  // a second backward would add the same gradients again
  }
  Matrix<T> backward(const ConstMatrixRef<T>& dY) {
    Matrix<T> dX;
    backward(dY, dX);
    return dX;
  }
  ///@}

  /// Folds the named adapters (by default the active set) into the shared
  /// base: afterwards they cost nothing in forward. Adapters active but not
  /// merged run on top, as PEFT's do: on the raw input, their deltas and
  /// edits applied around the merged base. Deltas fold first, then input edits,
  /// then output edits, which is the order forward applies them. All or
  /// nothing: the fold runs on a copy of the base, which replaces it only if
  /// every adapter folded (and, with safe_merge, the result is finite).
  /// Throws peft::Error when something is merged already, for an unknown,
  /// repeated or unmergeable adapter, for DoRA with others, or for
  /// parameters holding NaN or Inf.
  ///@{
  void merge(bool safe_merge = false)
    requires is_dense_linear<Base, T>
  {
    merge(active_adapters(), safe_merge);
  }
  void merge(const std::vector<std::string>& names, bool safe_merge = false)
    requires is_dense_linear<Base, T>
  {
    PEFT_REQUIRE(merged_.empty(), "MultiAdapted::merge: adapters [", joined(merged_),
                 "] are merged already; call unmerge() first");
    PEFT_REQUIRE(!names.empty(), "MultiAdapted::merge: expected at least one adapter to merge");
    const std::vector<SlotBase*> chosen = resolve(names, "merge");
    for (SlotBase* s : chosen) {
      PEFT_REQUIRE(s->mergeable(), "MultiAdapted::merge: adapter '", s->name, "' cannot merge into the base layer");
      for (const auto& p : s->parameters())
        PEFT_REQUIRE(p.value.allFinite(), "MultiAdapted::merge: parameter '", p.name, "' of adapter '", s->name,
                     "' holds NaN or Inf; expected finite values");
    }
    std::vector<SlotBase*> order;  // deltas, then input edits, then output edits
    for (SlotBase* s : chosen)
      if (s->adds_delta()) order.push_back(s);
    for (SlotBase* s : chosen)
      if (!s->adds_delta() && s->edits_input()) order.push_back(s);
    for (SlotBase* s : chosen)
      if (!s->adds_delta() && !s->edits_input()) order.push_back(s);
    bind_base(order);
    Linear<T> merged = *base_;
    for (SlotBase* s : order) s->fold_in(merged);
    PEFT_REQUIRE(!safe_merge || (merged.weight().allFinite() && merged.bias().allFinite()),
                 "MultiAdapted::merge: the merged weights would hold NaN or Inf (safe_merge); base left unchanged");
    *base_ = std::move(merged);
    merged_ = std::move(order);
    merged_values_ = snapshot(merged_);
    invalidate();
  }
  ///@}

  /// Takes the merged adapters out of the base again (in reverse order, on a
  /// copy that replaces the base when every step succeeded). Throws
  /// peft::Error when nothing is merged or a merged adapter's parameters
  /// changed since merge().
  void unmerge()
    requires is_dense_linear<Base, T>
  {
    PEFT_REQUIRE(!merged_.empty(), "MultiAdapted::unmerge: nothing is merged");
    const std::vector<T> now = snapshot(merged_);
    PEFT_REQUIRE(now.size() == merged_values_.size() &&
                     std::memcmp(now.data(), merged_values_.data(), now.size() * sizeof(T)) == 0,
                 "MultiAdapted::unmerge: the parameters of [", joined(merged_),
                 "] changed while merged; unmerging would not restore the base weights");
    bind_base(merged_);
    Linear<T> restored = *base_;
    for (auto s = merged_.rbegin(); s != merged_.rend(); ++s) (*s)->fold_out(restored);
    *base_ = std::move(restored);
    merged_.clear();
    merged_values_.clear();
    invalidate();
  }
  /// The merged adapters' names, in the order they were folded in.
  std::vector<std::string> merged_adapters() const { return names_of(merged_); }

  /// PEFT's add_weighted_adapter: a new adapter `new_name` (inactive) that
  /// combines `names` with `weights` (negative ones subtract), as
  /// core/adapter_combination.hpp defines: Cat and Linear take LoRA adapters
  /// (Linear needs equal ranks); SVD and Dense take any adapters with a dense
  /// ΔW (SVD gives a LoRA of rank `rank`, by default the largest source rank;
  /// `svd_clamp` in (0, 1] clamps its factors to that quantile of their
  /// entries). One source is combined linearly, as PEFT does. Throws
  /// peft::Error for a taken name, unknown adapters, a weight count that
  /// differs, non-finite weights, sources the combination cannot take, or a
  /// rank given to anything but SVD or outside [1, min(d_in, d_out)].
  void add_weighted_adapter(const std::string& new_name, const std::vector<std::string>& names,
                            const std::vector<double>& weights, Combination how = Combination::SVD, Index rank = 0,
                            std::optional<double> svd_clamp = std::nullopt) {
    const std::string who = "MultiAdapted::add_weighted_adapter";
    PEFT_REQUIRE(find(new_name) < 0, who, ": an adapter named '", new_name, "' exists already; expected a new name");
    PEFT_REQUIRE(!names.empty() && names.size() == weights.size(), who,
                 ": expected one weight per adapter (at least one adapter), got ", names.size(), " adapters and ",
                 weights.size(), " weights");
    for (const double w : weights) PEFT_REQUIRE(std::isfinite(w), who, ": expected finite weights, got ", w);
    PEFT_REQUIRE(rank == 0 || how == Combination::SVD, who, ": a rank applies to Combination::SVD only, got ", rank);
    PEFT_REQUIRE(!svd_clamp || how == Combination::SVD, who, ": svd_clamp applies to Combination::SVD only");
    PEFT_REQUIRE(!svd_clamp || (*svd_clamp > 0 && *svd_clamp <= 1), who, ": svd_clamp must be in (0, 1], got ",
                 svd_clamp.value_or(0));
    std::vector<SlotBase*> sources;
    for (const auto& n : names) sources.push_back(slots_[static_cast<std::size_t>(require(n, "add_weighted_adapter"))].get());
    std::vector<const LoRA<T>*> loras;  // null where a source is not a LoRA
    for (SlotBase* source : sources) {
      const auto* lora = static_cast<const LoRA<T>*>(source->address(typeid(LoRA<T>)));
      PEFT_REQUIRE(!lora || !lora->config().lora_bias, who, ": '", source->name,
                   "' has a lora_B bias (lora_bias), which a combination cannot carry");
      loras.push_back(lora);
    }
    if (sources.size() == 1 && how == Combination::Cat) how = Combination::Linear;
    if (how == Combination::Cat || how == Combination::Linear) {
      for (std::size_t i = 0; i < sources.size(); ++i)
        PEFT_REQUIRE(loras[i] != nullptr, who, ": '", sources[i]->name, "' is not a LoRA adapter; Combination::",
                     how == Combination::Cat ? "Cat" : "Linear",
                     " combines LoRA factors (Combination::SVD or Dense take any adapter with a dense ΔW)");
      if (how == Combination::Cat) {
        add_adapter(new_name, combination::cat(loras, weights));
        return;
      }
      for (std::size_t i = 1; i < sources.size(); ++i)
        PEFT_REQUIRE(loras[i]->rank() == loras[0]->rank(), who, ": Combination::Linear needs equal ranks (PEFT's "
                     "rule); '", sources[0]->name, "' has r = ", loras[0]->rank(), ", '", sources[i]->name, "' r = ",
                     loras[i]->rank(), " (Combination::Cat or SVD take any ranks)");
      add_adapter(new_name, combination::linear(loras, weights));
      return;
    }
    Matrix<T> delta = Matrix<T>::Zero(base_->out_features(), base_->in_features());
    for (std::size_t i = 0; i < sources.size(); ++i) {
      PEFT_REQUIRE(sources[i]->has_delta_weight(), who, ": '", sources[i]->name,
                   "' has no dense ΔW (it edits the input or output, or reads the base), so it cannot be summed");
      delta += static_cast<T>(weights[i]) * sources[i]->delta_weight();
    }
    if (how == Combination::Dense) {
      add_adapter(new_name, combination::dense(delta));
      return;
    }
    if (rank == 0) {
      for (std::size_t i = 0; i < sources.size(); ++i) {
        PEFT_REQUIRE(loras[i] != nullptr, who, ": '", sources[i]->name,
                     "' has no rank to default to; expected an explicit rank for Combination::SVD");
        rank = std::max(rank, loras[i]->rank());
      }
    }
    const Index most = std::min(base_->in_features(), base_->out_features());
    PEFT_REQUIRE(rank >= 1 && rank <= most, who, ": expected a rank in [1, ", most, "] (min(d_in, d_out)), got ", rank);
    add_adapter(new_name, combination::svd(delta, rank, svd_clamp, loras[0] ? &loras[0]->config() : nullptr));
  }

  /// The trainable tensors of the active adapters (activation order), or of one adapter.
  ///@{
  std::vector<Parameter<T>> parameters() {
    std::vector<Parameter<T>> views;
    for (SlotBase* s : active_) {
      auto more = s->parameters();
      views.insert(views.end(), more.begin(), more.end());
    }
    return views;
  }
  std::vector<Parameter<T>> parameters(const std::string& name) {
    return slots_[static_cast<std::size_t>(require(name, "parameters"))]->parameters();
  }
  ///@}
  /// Zeroes every adapter's gradients.
  void zero_grad() {
    for (auto& s : slots_) s->zero_grad();
  }
  /// Trainable scalars of the active adapters, or of one adapter.
  ///@{
  Index num_params() const {
    Index n = 0;
    for (const SlotBase* s : active_) n += s->num_params();
    return n;
  }
  Index num_params(const std::string& name) const {
    return slots_[static_cast<std::size_t>(require(name, "num_params"))]->num_params();
  }
  ///@}
  /// Training mode (dropout) for every adapter.
  void set_training(bool training) {
    for (auto& s : slots_) s->set_training(training);
  }

  /// The shared frozen layer.
  ///@{
  Base& base() { return *base_; }
  const Base& base() const { return *base_; }
  const std::shared_ptr<Base>& shared_base() const { return base_; }
  ///@}
  Index in_features() const { return base_->in_features(); }    ///< d_in
  Index out_features() const { return base_->out_features(); }  ///< d_out
  /// Forward + backward flops for N rows with the active set.
  double flops(Index N) const {
    double f = base_->flops(N);
    for (const SlotBase* s : active_) f += s->flops(N);
    return f;
  }

 private:
  /// One adapter behind a common interface.
  struct SlotBase {
    explicit SlotBase(std::string n) : name(std::move(n)) {}
    virtual ~SlotBase() = default;
    virtual bool edits_input() const = 0;
    virtual bool adds_delta() const = 0;
    virtual bool edits_output() const = 0;
    virtual bool uses_base() const = 0;
    virtual void use_base(const Base& base) = 0;
    virtual void forward_input(Matrix<T>& X) = 0;
    virtual void backward_input(Matrix<T>& dX) = 0;
    virtual void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) = 0;
    virtual void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) = 0;
    virtual void forward_output(Matrix<T>& H) = 0;
    virtual void backward_output(Matrix<T>& dH) = 0;
    virtual bool infers() const = 0;  // has the const inference edit points (Infers)
    virtual void infer_input(Matrix<T>& X) const = 0;
    virtual void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const = 0;
    virtual void infer_output(const Base& base, Matrix<T>& H) const = 0;
    virtual std::vector<Parameter<T>> parameters() = 0;
    virtual void zero_grad() = 0;
    virtual Index num_params() const = 0;
    virtual double flops(Index N) const = 0;
    virtual void set_training(bool training) = 0;
    virtual void* address(const std::type_info& type) = 0;  // the adapter if it is a `type`, else null
    virtual AdapterState<T> state(const Base& base) const = 0;
    virtual bool has_delta_weight() const = 0;
    virtual Matrix<T> delta_weight() const = 0;
    virtual bool mergeable() const = 0;
    virtual void fold_in(Linear<T>& dense) = 0;   // merge: W (and b) += the adapter
    virtual void fold_out(Linear<T>& dense) = 0;  // unmerge: the inverse
    std::string name;
  };

  template <class A>
  struct Slot final : SlotBase {
    Slot(std::string n, A a) : SlotBase(std::move(n)), adapter(std::move(a)) {}
    bool edits_input() const override {
      if constexpr (EditsInput<A>) return input_edit_active(adapter);
      else return false;
    }
    bool adds_delta() const override { return AddsDelta<A>; }
    bool edits_output() const override {
      if constexpr (EditsOutput<A>) return output_edit_active(adapter);
      else return false;
    }
    bool uses_base() const override { return UsesBase<A>; }
    void use_base(const Base& base) override {
      if constexpr (UsesBase<A>) adapter.use_base(base);
      else (void)base;
    }
    void forward_input(Matrix<T>& X) override {
      if constexpr (EditsInput<A>) adapter.forward_input(X);
    }
    void backward_input(Matrix<T>& dX) override {
      if constexpr (EditsInput<A>) adapter.backward_input(dX);
    }
    void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) override {
      if constexpr (AddsDelta<A>) adapter.forward_delta(X, Y);
    }
    void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) override {
      if constexpr (AddsDelta<A>) adapter.backward_delta(dY, dX);
    }
    void forward_output(Matrix<T>& H) override {
      if constexpr (EditsOutput<A>) adapter.forward_output(H);
    }
    void backward_output(Matrix<T>& dH) override {
      if constexpr (EditsOutput<A>) adapter.backward_output(dH);
    }
    bool infers() const override { return Infers<A>; }
    void infer_input(Matrix<T>& X) const override {
      if constexpr (Infers<A> && EditsInput<A>) adapter.infer_input(X);
    }
    void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const override {
      if constexpr (Infers<A> && AddsDelta<A>) adapter.infer_delta(X, Y);
    }
    void infer_output(const Base& base, Matrix<T>& H) const override {
      if constexpr (Infers<A> && EditsOutput<A>) {
        if constexpr (requires { adapter.infer_output(H); }) adapter.infer_output(H);
        else if constexpr (is_dense_linear<Base, T>) adapter.infer_output(base, H);
      }
    }
    std::vector<Parameter<T>> parameters() override { return adapter.parameters(); }
    void zero_grad() override { adapter.zero_grad(); }
    Index num_params() const override { return adapter.num_params(); }
    double flops(Index N) const override { return adapter.flops(N); }
    void set_training(bool training) override {
      if constexpr (HasTrainingMode<A>) adapter.set_training(training);
    }
    void* address(const std::type_info& type) override { return type == typeid(A) ? &adapter : nullptr; }
    AdapterState<T> state(const Base& base) const override { return adapter_state(adapter, base, false); }
    bool has_delta_weight() const override { return HasDeltaWeight<A>; }
    Matrix<T> delta_weight() const override {
      if constexpr (HasDeltaWeight<A>) return adapter.delta_weight();
      else return {};
    }
    bool mergeable() const override { return Mergeable<A>; }
    void fold_in(Linear<T>& dense) override {
      if constexpr (MergesItself<A>) adapter.merge_into(dense);
      else if constexpr (HasDeltaWeight<A>) dense.weight() += adapter.delta_weight();
    }
    void fold_out(Linear<T>& dense) override {
      if constexpr (MergesItself<A>) adapter.unmerge_from(dense);
      else if constexpr (HasDeltaWeight<A>) dense.weight() -= adapter.delta_weight();
    }
    A adapter;
  };

  /// The rows one adapter runs on in a mixed batch, in batch order.
  struct Group {
    int adapter = -1;
    std::vector<Index> row;
    Index rows() const { return static_cast<Index>(row.size()); }
    Index first() const { return row.front(); }
    bool contiguous() const { return row.back() - row.front() + 1 == rows(); }
  };

  /// A mixed batch's row groups and working memory: the layer's own for
  /// forward and backward, the calling thread's for infer.
  struct Batch {
    std::vector<Group> groups;               // per adapter: its rows
    std::vector<Group*> order;               // the groups with rows, first seen first
    std::vector<Matrix<T>> parts, gathered;  // one matrix per shape (see scratch())
    Matrix<T> x_edited;                      // the input after the input edits
  };

  enum class Mode { none, active, mixed };

  void backward_active(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    const bool edits = any_of(ran_, &SlotBase::edits_output);
    if (edits) {
      dH_ = dY;
      for (auto s = ran_.rbegin(); s != ran_.rend(); ++s)
        if ((*s)->edits_output()) (*s)->backward_output(dH_);
    }
    const ConstMatrixRef<T> dH = edits ? ConstMatrixRef<T>(dH_) : dY;
    base_->backward(dH, dX);
    for (SlotBase* s : ran_)
      if (s->adds_delta()) s->backward_delta(dH, dX);
    for (auto s = ran_.rbegin(); s != ran_.rend(); ++s)
      if ((*s)->edits_input()) (*s)->backward_input(dX);
  }

  void backward_mixed(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    const bool edits = any_of(ran_, &SlotBase::edits_output);
    if (edits) {
      dH_ = dY;
      for (const Group* g : batch_.order)
        if (slot(*g).edits_output()) edit_rows(batch_, *g, dH_, [&](Matrix<T>& m) { slot(*g).backward_output(m); });
    }
    const ConstMatrixRef<T> dH = edits ? ConstMatrixRef<T>(dH_) : dY;
    base_->backward(dH, dX);
    add_group_deltas(batch_, dH, dX, [](SlotBase& s, const ConstMatrixRef<T>& in, Matrix<T>& out) { s.backward_delta(in, out); });
    for (const Group* g : batch_.order)
      if (slot(*g).edits_input()) edit_rows(batch_, *g, dX, [&](Matrix<T>& m) { slot(*g).backward_input(m); });
  }

  /// For each group whose adapter adds a delta: delta(slot, its rows of
  /// `in`, a zeroed block), the block added into its rows of `out`
  /// (forward_delta into Y, backward_delta into dX, infer_delta into Y).
  /// Contiguous rows are read in place.
  template <class Delta>
  void add_group_deltas(Batch& batch, const ConstMatrixRef<T>& in, Matrix<T>& out, Delta&& delta) const {
    for (const Group* g : batch.order) {
      SlotBase& s = slot(*g);
      if (!s.adds_delta()) continue;
      Matrix<T>& part = scratch(batch.parts, g->rows(), out.cols());
      part.setZero();
      if (g->contiguous()) {
        delta(s, in.middleRows(g->first(), g->rows()), part);
        out.middleRows(g->first(), g->rows()) += part;
      } else {
        delta(s, gather(batch, in, *g), part);
        for (Index k = 0; k < g->rows(); ++k) out.row(g->row[k]) += part.row(k);
      }
    }
  }

  /// batch.groups[a]: the rows of adapter a (storage kept between calls);
  /// batch.order: the adapters with rows, first seen first. Rows of −1 are in none.
  void group_rows(Batch& batch, std::span<const int> row_adapter, const char* who) const {
    const int count = static_cast<int>(slots_.size());
    batch.groups.resize(slots_.size());
    for (int a = 0; a < count; ++a) {
      batch.groups[static_cast<std::size_t>(a)].adapter = a;
      batch.groups[static_cast<std::size_t>(a)].row.clear();
    }
    batch.order.clear();
    for (std::size_t i = 0; i < row_adapter.size(); ++i) {
      const int a = row_adapter[i];
      PEFT_REQUIRE(a >= -1 && a < count, "MultiAdapted::", who, ": row_adapter[", i, "] = ", a,
                   "; expected -1 (base only) or an adapter index in [0, ", count, ")");
      if (a < 0) continue;
      Group& g = batch.groups[static_cast<std::size_t>(a)];
      if (g.row.empty()) batch.order.push_back(&g);
      g.row.push_back(static_cast<Index>(i));
    }
  }

  SlotBase& slot(const Group& g) const { return *slots_[static_cast<std::size_t>(g.adapter)]; }

  static bool any_of(const std::vector<SlotBase*>& slots, bool (SlotBase::*property)() const) {
    return std::any_of(slots.begin(), slots.end(), [&](const SlotBase* s) { return (s->*property)(); });
  }

  /// A scratch matrix of rows x cols from `pool`, one per shape: groups of
  /// one size share it (it stays in cache), and a batch whose group sizes
  /// repeat from step to step allocates nothing after the first. At most 16
  /// shapes are kept (the oldest goes), so batches of ever-new sizes do not
  /// grow it. The reference is valid until the next call on the same pool.
  static Matrix<T>& scratch(std::vector<Matrix<T>>& pool, Index rows, Index cols) {
    for (auto& m : pool)
      if (m.rows() == rows && m.cols() == cols) return m;
    if (pool.size() >= 16) pool.erase(pool.begin());
    pool.emplace_back(rows, cols);
    return pool.back();
  }

  /// The group's rows of `from`, in a scratch matrix.
  static Matrix<T>& gather(Batch& batch, const ConstMatrixRef<T>& from, const Group& g) {
    Matrix<T>& to = scratch(batch.gathered, g.rows(), from.cols());
    for (Index k = 0; k < g.rows(); ++k) to.row(k) = from.row(g.row[k]);
    return to;
  }

  /// Applies an in-place row-wise edit to the group's rows of M.
  template <class Edit>
  static void edit_rows(Batch& batch, const Group& g, Matrix<T>& M, Edit&& edit) {
    Matrix<T>& rows = gather(batch, M, g);
    edit(rows);
    for (Index k = 0; k < g.rows(); ++k) M.row(g.row[k]) = rows.row(k);
  }

  void bind_base(const std::vector<SlotBase*>& slots) {
    if constexpr (is_dense_linear<Base, T>)
      for (SlotBase* s : slots)
        if (s->uses_base()) s->use_base(*base_);
  }

  static SlotBase* require_infers(SlotBase& s) {
    PEFT_REQUIRE(s.infers(), "MultiAdapted::infer: adapter '", s.name,
                 "' has no inference path; expected a kind with infer_* members (see the Infers concept)");
    return &s;
  }

  void check_input(const char* who, const ConstMatrixRef<T>& X) const {
    PEFT_REQUIRE(X.cols() == base_->in_features(), "MultiAdapted::", who, ": X must have in_features = ",
                 base_->in_features(), " columns, got ", detail::shape_str(X.rows(), X.cols()));
  }

  /// A backward needs the forward it follows: changes to the adapters void it.
  void invalidate() {
    last_ = Mode::none;
    ran_.clear();
  }

  Index find(const std::string& name) const {
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (slots_[i]->name == name) return static_cast<Index>(i);
    return -1;
  }
  Index require(const std::string& name, const char* who) const {
    const Index i = find(name);
    PEFT_REQUIRE(i >= 0, "MultiAdapted::", who, ": no adapter named '", name, "'; expected one of [",
                 joined_names(), "]");
    return i;
  }
  void* require_type(const std::string& name, const std::type_info& type) const {
    void* a = slots_[static_cast<std::size_t>(require(name, "adapter"))]->address(type);
    PEFT_REQUIRE(a != nullptr, "MultiAdapted::adapter: adapter '", name, "' is not of the type asked for");
    return a;
  }
  std::string joined_names() const {
    std::string all;
    for (const auto& s : slots_) all += (all.empty() ? "" : ", ") + s->name;
    return all;
  }
  static std::vector<std::string> names_of(const std::vector<SlotBase*>& slots) {
    std::vector<std::string> names;
    for (const SlotBase* s : slots) names.push_back(s->name);
    return names;
  }
  static std::string joined(const std::vector<SlotBase*>& slots) {
    std::string all;
    for (const SlotBase* s : slots) all += (all.empty() ? "" : ", ") + s->name;
    return all;
  }

  /// The slots for `names`: each known, listed once, and DoRA only alone.
  std::vector<SlotBase*> resolve(const std::vector<std::string>& names, const char* who) const {
    std::vector<SlotBase*> chosen;
    for (const auto& n : names) {
      SlotBase* s = slots_[static_cast<std::size_t>(require(n, who))].get();
      PEFT_REQUIRE(std::find(chosen.begin(), chosen.end(), s) == chosen.end(), "MultiAdapted::", who, ": '", n,
                   "' is listed twice; expected each adapter once");
      chosen.push_back(s);
    }
    for (const SlotBase* s : chosen)
      PEFT_REQUIRE(!s->uses_base() || chosen.size() == 1, "MultiAdapted::", who, ": '", s->name,
                   "' reads the base's weights (DoRA) and cannot be combined; expected it alone");
    return chosen;
  }

  /// The values unmerge() needs unchanged.
  static std::vector<T> snapshot(const std::vector<SlotBase*>& slots) {
    std::vector<T> values;
    for (SlotBase* s : slots)
      for (const auto& p : s->parameters()) values.insert(values.end(), p.value.data(), p.value.data() + p.value.size());
    return values;
  }

  std::shared_ptr<Base> base_;
  std::vector<std::unique_ptr<SlotBase>> slots_;
  std::vector<SlotBase*> active_;
  std::vector<SlotBase*> ran_;     // the adapters the last forward ran, for backward
  std::vector<SlotBase*> merged_;  // folded into *base_, in fold order
  std::vector<T> merged_values_;   // their parameters at merge()
  Batch batch_;  // the last mixed forward's groups, and the working memory of forward and backward
  Mode last_ = Mode::none;
  Index rows_ = 0;
  Matrix<T> dH_;
};

}  // namespace peft
