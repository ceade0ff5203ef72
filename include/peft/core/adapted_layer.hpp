#pragma once
// AdaptedLayer<T>: any Adapted<A, Base> behind one type, for code that picks
// the adapter (or the base's storage) at run time (a loaded PEFT directory, a
// config file). Same calls as Adapted; what an adapter cannot do (merge,
// delta_weight) throws peft::Error naming the adapter. get<A>() gives the
// typed layer back.

#include <any>
#include <memory>
#include <typeinfo>
#include <string>
#include <utility>
#include <vector>

#include <peft/core/adapted.hpp>
#include <peft/core/error.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// What saving a layer needs: its parameter block (for an adapter over shared
/// factors, such as LoRTA, the shared block and the layer's place in it) and the base.
template <class T>
struct AdapterState {
  const ParameterBlock<T>* parameters = nullptr;  ///< the adapter's block, or the shared factors' block
  const Linear<T>* base = nullptr;                ///< the frozen layer; null unless it is a dense Linear<T>
  /// The frozen layer's sizes and bias (empty if none), whatever its type.
  ///@{
  Index in_features = 0, out_features = 0;
  const Vector<T>* bias = nullptr;
  ///@}
  bool shared = false;                            ///< whether `parameters` is a shared factor set
  /// A shared-factor adapter's position (its layer and matrix type); -1 otherwise.
  ///@{
  Index layer = -1, matrix_type = -1;
  ///@}
  /// A copy of the adapter's config (LoRAConfig, C3AConfig, ...; LoRTA: the
  /// factors' LoRTAConfig), from which io writes or checks adapter_config.json.
  std::any config;
  bool base_bias_trainable = false;  ///< whether the base bias is a trained parameter
};

/// The AdapterState of `adapter` over `base` (pointers into both, valid while they live).
template <class A, class B>
AdapterState<typename A::Scalar> adapter_state(const A& adapter, const B& base, bool base_bias_trainable) {
  AdapterState<typename A::Scalar> state;
  if constexpr (is_dense_linear<B, typename A::Scalar>) state.base = &base;
  state.in_features = base.in_features();
  state.out_features = base.out_features();
  if constexpr (requires { base.bias(); }) state.bias = &base.bias();
  else state.bias = &const_cast<B&>(base).bias();  // FrozenLayer needs only a non-const bias(); it is only read
  if constexpr (requires { adapter.factors().parameter_block(); }) {
    state.parameters = &adapter.factors().parameter_block();
    state.shared = true;
    state.layer = adapter.layer();
    state.matrix_type = adapter.matrix_type();
    state.config = adapter.factors().config();
  } else {
    state.parameters = &adapter.parameter_block();
    if constexpr (requires { adapter.config(); }) state.config = adapter.config();
  }
  state.base_bias_trainable = base_bias_trainable;
  return state;
}

/// The AdapterState of a typed layer (pointers into `layer`, valid while it lives).
template <class A, class B>
AdapterState<typename A::Scalar> adapter_state(const Adapted<A, B>& layer) {
  return adapter_state(layer.adapter(), layer.base(), layer.base_bias_trainable());
}

/// Any Adapted<A, Base> over scalar T behind one type, for adapters picked at
/// run time; what the adapter cannot do (merge, delta_weight) throws peft::Error.
template <class T>
class AdaptedLayer {
 public:
  using Scalar = T;  ///< element type

  /// `kind` names the adapter in messages and for io (e.g. "LORA").
  template <class A, class B>
  AdaptedLayer(Adapted<A, B> layer, std::string kind)
      : kind_(std::move(kind)), impl_(std::make_unique<Model<A, B>>(std::move(layer))) {}

  const std::string& kind() const { return kind_; }  ///< the adapter's name, e.g. "LORA"

  /// Y (N x d_out) as Adapted::forward.
  ///@{
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) { impl_->forward(X, Y); }
  Matrix<T> forward(const ConstMatrixRef<T>& X) {
    Matrix<T> Y;
    impl_->forward(X, Y);
    return Y;
  }
  ///@}
  /// dX (N x d_in) as Adapted::backward; adds into the adapter's gradients.
  ///@{
  void backward(const ConstMatrixRef<T>& dY, Matrix<T>& dX) { impl_->backward(dY, dX); }
  Matrix<T> backward(const ConstMatrixRef<T>& dY) {
    Matrix<T> dX;
    impl_->backward(dY, dX);
    return dX;
  }
  ///@}

  bool mergeable() const { return impl_->mergeable(); }  ///< whether merge() and unmerge() are supported
  /// safe_merge: throw (base unchanged) if the merged weights are not finite.
  void merge(bool safe_merge = false) {
    require_mergeable("merge");
    impl_->merge(safe_merge);
  }
  /// Restores the base weights, as Adapted::unmerge; throws if not mergeable().
  void unmerge() {
    require_mergeable("unmerge");
    impl_->unmerge();
  }
  bool merged() const { return impl_->merged(); }                      ///< whether merged into base()
  /// As Adapted::rounding_error: W's rounding in the last (un)merge on a rounded base.
  RoundingError rounding_error() const { return impl_->rounding_error(); }
  void set_training(bool training) { impl_->set_training(training); }  ///< training applies dropout, eval not
  /// The adapter's random generators (dropout masks), for training checkpoints.
  std::vector<Rng*> random_streams() { return impl_->random_streams(); }

  bool has_delta_weight() const { return impl_->has_delta_weight(); }  ///< whether delta_weight() is supported
  /// The dense ΔW (d_out x d_in) of an adapter that is linear in X.
  Matrix<T> delta_weight() const {
    PEFT_REQUIRE(has_delta_weight(), "AdaptedLayer::delta_weight: the ", kind_, " adapter has no dense ΔW");
    return impl_->delta_weight();
  }

  /// The named views: the adapter's, then "base_layer.bias" when the base bias is trainable.
  std::vector<Parameter<T>> parameters() { return impl_->parameters(); }
  void zero_grad() { impl_->zero_grad(); }                  ///< zeroes every gradient of parameters()
  Index num_params() const { return impl_->num_params(); }  ///< trainable scalars, as Adapted::num_params
  /// As Adapted::set_base_bias_trainable (PEFT's bias = "lora_only" / "all").
  void set_base_bias_trainable(bool trainable) { impl_->set_base_bias_trainable(trainable); }
  bool base_bias_trainable() const { return impl_->base_bias_trainable(); }  ///< whether base().bias() is trained

  AdapterState<T> state() const { return impl_->state(); }  ///< what io needs to save this layer

  /// The frozen layer when it is a dense Linear<T>; throws peft::Error for
  /// another base type (see base_as).
  ///@{
  Linear<T>& base() { return *static_cast<Linear<T>*>(require_base<Linear<T>>("base")); }
  const Linear<T>& base() const { return *static_cast<const Linear<T>*>(require_base<Linear<T>>("base")); }
  ///@}
  /// The frozen layer as a B (Linear<T>, LinearBF16, ...), or nullptr when it is another type.
  ///@{
  template <class B>
  B* base_as() {
    return static_cast<B*>(impl_->base_address(typeid(B)));
  }
  template <class B>
  const B* base_as() const {
    return static_cast<const B*>(impl_->base_address(typeid(B)));
  }
  ///@}
  Index in_features() const { return impl_->in_features(); }    ///< d_in
  Index out_features() const { return impl_->out_features(); }  ///< d_out
  double flops(Index N) const { return impl_->flops(N); }       ///< forward + backward flops for N rows

  /// The typed layer, or nullptr when this one wraps another adapter (or base) type.
  ///@{
  template <class A, class B = Linear<T>>
  Adapted<A, B>* get() {
    auto* model = dynamic_cast<Model<A, B>*>(impl_.get());
    return model ? &model->layer : nullptr;
  }
  template <class A, class B = Linear<T>>
  const Adapted<A, B>* get() const {
    const auto* model = dynamic_cast<const Model<A, B>*>(impl_.get());
    return model ? &model->layer : nullptr;
  }
  ///@}

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) = 0;
    virtual void backward(const ConstMatrixRef<T>& dY, Matrix<T>& dX) = 0;
    virtual bool mergeable() const = 0;
    virtual void merge(bool safe_merge) = 0;
    virtual void unmerge() = 0;
    virtual bool merged() const = 0;
    virtual RoundingError rounding_error() const = 0;
    virtual void set_training(bool training) = 0;
    virtual std::vector<Rng*> random_streams() = 0;
    virtual bool has_delta_weight() const = 0;
    virtual Matrix<T> delta_weight() const = 0;
    virtual std::vector<Parameter<T>> parameters() = 0;
    virtual void zero_grad() = 0;
    virtual Index num_params() const = 0;
    virtual void set_base_bias_trainable(bool trainable) = 0;
    virtual bool base_bias_trainable() const = 0;
    virtual void* base_address(const std::type_info& type) = 0;  // the base if it is a `type`, else null
    virtual Index in_features() const = 0;
    virtual Index out_features() const = 0;
    virtual double flops(Index N) const = 0;
    virtual AdapterState<T> state() const = 0;
  };

  template <class A, class B>
  struct Model final : Concept {
    explicit Model(Adapted<A, B> l) : layer(std::move(l)) {}
    void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y) override { layer.forward(X, Y); }
    void backward(const ConstMatrixRef<T>& dY, Matrix<T>& dX) override { layer.backward(dY, dX); }
    bool mergeable() const override { return Mergeable<A>; }
    void merge(bool safe_merge) override {
      if constexpr (Mergeable<A>) layer.merge(safe_merge);
    }
    void unmerge() override {
      if constexpr (Mergeable<A>) layer.unmerge();
    }
    bool merged() const override { return layer.merged(); }
    RoundingError rounding_error() const override { return layer.rounding_error(); }
    void set_training(bool training) override { layer.set_training(training); }
    std::vector<Rng*> random_streams() override { return layer.random_streams(); }
    bool has_delta_weight() const override { return HasDeltaWeight<A> || HasBaseDeltaWeight<A>; }
    Matrix<T> delta_weight() const override {
      if constexpr (HasDeltaWeight<A>) return layer.adapter().delta_weight();
      else if constexpr (HasBaseDeltaWeight<A>) return layer.adapter().delta_weight(layer.base());
      else return {};
    }
    std::vector<Parameter<T>> parameters() override { return layer.parameters(); }
    void zero_grad() override { layer.zero_grad(); }
    Index num_params() const override { return layer.num_params(); }
    void set_base_bias_trainable(bool trainable) override { layer.set_base_bias_trainable(trainable); }
    bool base_bias_trainable() const override { return layer.base_bias_trainable(); }
    void* base_address(const std::type_info& type) override {
      return type == typeid(B) ? static_cast<void*>(&layer.base()) : nullptr;
    }
    Index in_features() const override { return layer.in_features(); }
    Index out_features() const override { return layer.out_features(); }
    double flops(Index N) const override { return layer.flops(N); }
    AdapterState<T> state() const override { return adapter_state(layer); }

    Adapted<A, B> layer;
  };

  /// The base as a B, or peft::Error naming what was asked for.
  template <class B>
  void* require_base(const char* what) const {
    void* base = impl_->base_address(typeid(B));
    PEFT_REQUIRE(base != nullptr, "AdaptedLayer::", what, ": the ", kind_,
                 " layer's base is not a dense Linear<T> (its weight is stored rounded, e.g. LinearBF16); use "
                 "base_as<LinearBF16>() or the layer's own calls");
    return base;
  }

  void require_mergeable(const char* what) const {
    PEFT_REQUIRE(mergeable(), "AdaptedLayer::", what, ": the ", kind_, " adapter cannot merge into the base layer");
  }

  std::string kind_;
  std::unique_ptr<Concept> impl_;
};

}  // namespace peft
