#pragma once
// Trainable parameters: one contiguous block of values and one of gradients
// per adapter (or per shared factor set, as LoRTA's), with named views shaped
// like the PEFT tensors. A trainer can step or all-reduce the whole block as
// one vector, or walk the named views.

#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// A named trainable tensor. `shape` is the PEFT tensor shape; `value` and
/// `grad` view it as a row-major matrix of shape[0] x (product of the rest)
/// (a 1-D tensor of n entries is 1 x n).
template <class T>
struct Parameter {
  std::string_view name;          ///< PEFT's tensor name, e.g. "lora_A"
  std::span<const Index> shape;   ///< PEFT's tensor shape, e.g. {r, d_in}
  MatrixMap<T> value;             ///< the values, in the block's storage
  MatrixMap<T> grad;              ///< the gradients (backward adds into them)
};

/// The parameters of one adapter (or one shared factor set): named tensors laid
/// out one after another in a single value vector, with a gradient vector beside it.
template <class T>
class ParameterBlock {
 public:
  /// Declares a tensor, zero-initialised, and returns its index. Declare every
  /// tensor before taking views: growing the block moves its storage.
  Index add(std::string name, std::vector<Index> shape) {
    PEFT_REQUIRE(!shape.empty(), "ParameterBlock::add: tensor '", name, "' needs at least one dimension");
    for (const Index extent : shape)
      PEFT_REQUIRE(extent > 0, "ParameterBlock::add: tensor '", name, "' has a dimension ", extent,
                   ", expected every dimension > 0");
    PEFT_REQUIRE(find(name) < 0, "ParameterBlock::add: tensor '", name, "' declared twice");
    Slot slot;
    slot.rows = shape.size() == 1 ? 1 : shape[0];
    slot.cols = std::accumulate(shape.begin() + (shape.size() == 1 ? 0 : 1), shape.end(), Index{1},
                                std::multiplies<>());
    slot.offset = values_.size();
    slot.name = std::move(name);
    slot.shape = std::move(shape);
    const Index total = slot.offset + slot.rows * slot.cols;
    values_.conservativeResize(total);
    grads_.conservativeResize(total);
    values_.tail(total - slot.offset).setZero();
    grads_.tail(total - slot.offset).setZero();
    slots_.push_back(std::move(slot));
    return static_cast<Index>(slots_.size()) - 1;
  }

  /// Number of tensors.
  Index size() const { return static_cast<Index>(slots_.size()); }
  /// Number of scalar parameters.
  Index num_params() const { return values_.size(); }

  /// Values and gradients of tensor i (the index add() returned), viewed as
  /// shape[0] x (product of the rest) like Parameter.
  ///@{
  MatrixMap<T> value(Index i) { return map(values_, i); }
  MatrixMap<T> grad(Index i) { return map(grads_, i); }
  ConstMatrixMap<T> value(Index i) const { return cmap(values_, i); }
  ConstMatrixMap<T> grad(Index i) const { return cmap(grads_, i); }
  ///@}

  std::string_view name(Index i) const { return slot(i).name; }          ///< name of tensor i
  std::span<const Index> shape(Index i) const { return slot(i).shape; }  ///< PEFT shape of tensor i

  /// The whole block, tensor after tensor in declaration order.
  ///@{
  Vector<T>& values() { return values_; }
  Vector<T>& grads() { return grads_; }
  const Vector<T>& values() const { return values_; }
  const Vector<T>& grads() const { return grads_; }
  ///@}

  void zero_grad() { grads_.setZero(); }  ///< sets every gradient to 0

  /// Named views in declaration order (stable across calls).
  std::vector<Parameter<T>> views() {
    std::vector<Parameter<T>> out;
    out.reserve(slots_.size());
    for (Index i = 0; i < size(); ++i) out.push_back({name(i), shape(i), value(i), grad(i)});
    return out;
  }

  /// Index of the tensor called `name`, or -1.
  Index find(std::string_view name) const {
    for (Index i = 0; i < size(); ++i)
      if (slots_[static_cast<std::size_t>(i)].name == name) return i;
    return -1;
  }

 private:
  struct Slot {
    std::string name;
    std::vector<Index> shape;
    Index rows = 0, cols = 0, offset = 0;
  };

  const Slot& slot(Index i) const {
    PEFT_ASSERT(i >= 0 && i < size());
    return slots_[static_cast<std::size_t>(i)];
  }
  MatrixMap<T> map(Vector<T>& storage, Index i) {
    const Slot& s = slot(i);
    return MatrixMap<T>(storage.data() + s.offset, s.rows, s.cols);
  }
  ConstMatrixMap<T> cmap(const Vector<T>& storage, Index i) const {
    const Slot& s = slot(i);
    return ConstMatrixMap<T>(storage.data() + s.offset, s.rows, s.cols);
  }

  std::vector<Slot> slots_;
  Vector<T> values_;
  Vector<T> grads_;
};

/// Base of an adapter that owns its parameters: the named views, the block
/// itself (for trainers that step or all-reduce it as one vector), zero_grad
/// and the count.
template <class T>
class OwnsParameters {
 public:
  /// Named views of every tensor, in declaration order.
  std::vector<Parameter<T>> parameters() { return params_.views(); }
  /// The block itself: values() and grads() as flat vectors.
  ///@{
  ParameterBlock<T>& parameter_block() { return params_; }
  const ParameterBlock<T>& parameter_block() const { return params_; }
  ///@}
  void zero_grad() { params_.zero_grad(); }                  ///< sets every gradient to 0
  Index num_params() const { return params_.num_params(); }  ///< number of trainable scalars

 protected:
  ParameterBlock<T> params_;  ///< the adapter's tensors; the derived class declares them
};

}  // namespace peft
