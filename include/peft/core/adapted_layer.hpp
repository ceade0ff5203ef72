#pragma once
// AdaptedLayer<T>: any Adapted<A> behind one type, for code that picks the
// adapter at run time (a loaded PEFT directory, a config file). Same calls as
// Adapted<A>; what an adapter cannot do (merge, delta_weight) throws
// peft::Error naming the adapter. get<A>() gives the typed layer back.

#include <any>
#include <memory>
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
  const Linear<T>* base = nullptr;                ///< the frozen layer
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

/// The AdapterState of a typed layer (pointers into `layer`, valid while it lives).
template <class A>
AdapterState<typename A::Scalar> adapter_state(const Adapted<A>& layer) {
  AdapterState<typename A::Scalar> state;
  state.base = &layer.base();
  if constexpr (requires { layer.adapter().factors().parameter_block(); }) {
    state.parameters = &layer.adapter().factors().parameter_block();
    state.shared = true;
    state.layer = layer.adapter().layer();
    state.matrix_type = layer.adapter().matrix_type();
    state.config = layer.adapter().factors().config();
  } else {
    state.parameters = &layer.adapter().parameter_block();
    if constexpr (requires { layer.adapter().config(); }) state.config = layer.adapter().config();
  }
  state.base_bias_trainable = layer.base_bias_trainable();
  return state;
}

/// Any Adapted<A> over scalar T behind one type, for adapters picked at run time;
/// what the adapter cannot do (merge, delta_weight) throws peft::Error.
template <class T>
class AdaptedLayer {
 public:
  using Scalar = T;  ///< element type

  /// `kind` names the adapter in messages and for io (e.g. "LORA").
  template <class A>
  AdaptedLayer(Adapted<A> layer, std::string kind)
      : kind_(std::move(kind)), impl_(std::make_unique<Model<A>>(std::move(layer))) {}

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
  void set_training(bool training) { impl_->set_training(training); }  ///< training applies dropout, eval not

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

  /// The frozen layer.
  ///@{
  Linear<T>& base() { return impl_->base(); }
  const Linear<T>& base() const { return impl_->cbase(); }
  ///@}
  Index in_features() const { return base().in_features(); }    ///< d_in
  Index out_features() const { return base().out_features(); }  ///< d_out
  double flops(Index N) const { return impl_->flops(N); }       ///< forward + backward flops for N rows

  /// The typed layer, or nullptr when this one wraps another adapter type.
  ///@{
  template <class A>
  Adapted<A>* get() {
    auto* model = dynamic_cast<Model<A>*>(impl_.get());
    return model ? &model->layer : nullptr;
  }
  template <class A>
  const Adapted<A>* get() const {
    const auto* model = dynamic_cast<const Model<A>*>(impl_.get());
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
    virtual void set_training(bool training) = 0;
    virtual bool has_delta_weight() const = 0;
    virtual Matrix<T> delta_weight() const = 0;
    virtual std::vector<Parameter<T>> parameters() = 0;
    virtual void zero_grad() = 0;
    virtual Index num_params() const = 0;
    virtual void set_base_bias_trainable(bool trainable) = 0;
    virtual bool base_bias_trainable() const = 0;
    virtual Linear<T>& base() = 0;
    virtual const Linear<T>& cbase() const = 0;
    virtual double flops(Index N) const = 0;
    virtual AdapterState<T> state() const = 0;
  };

  template <class A>
  struct Model final : Concept {
    explicit Model(Adapted<A> l) : layer(std::move(l)) {}
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
    void set_training(bool training) override { layer.set_training(training); }
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
    Linear<T>& base() override { return layer.base(); }
    const Linear<T>& cbase() const override { return layer.base(); }
    double flops(Index N) const override { return layer.flops(N); }
    AdapterState<T> state() const override { return adapter_state(layer); }

    Adapted<A> layer;
  };

  void require_mergeable(const char* what) const {
    PEFT_REQUIRE(mergeable(), "AdaptedLayer::", what, ": the ", kind_, " adapter cannot merge into the base layer");
  }

  std::string kind_;
  std::unique_ptr<Concept> impl_;
};

}  // namespace peft
