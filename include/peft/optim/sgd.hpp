#pragma once
// SGD with momentum, as torch.optim.SGD (dampening 0 by default):
//   g ← g + wd·p;  b ← g on the first step, else b ← μ·b + (1 − dampening)·g
//   g ← g + μ·b (Nesterov) or b;  p ← p − lr·g

#include <cmath>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/optim/optimizer_state.hpp>
#include <peft/optim/param_set.hpp>

namespace peft::optim {

/// SGD's hyperparameters, as torch.optim.SGD's.
struct SGDOptions {
  double lr = 1e-2;           ///< learning rate, finite and >= 0
  double momentum = 0.0;      ///< μ, >= 0 (0: plain SGD, no buffers used)
  double dampening = 0.0;     ///< the momentum buffer adds (1 − dampening)·g
  double weight_decay = 0.0;  ///< L2: g ← g + wd·p, >= 0
  bool nesterov = false;      ///< Nesterov momentum; needs momentum > 0 and dampening = 0
};

/// SGD with momentum over a ParamSet, as torch.optim.SGD.
template <class T>
class SGD {
 public:
  using Scalar = T;  ///< the parameters' element type

  /// Throws peft::Error for a negative or non-finite lr, a negative momentum or
  /// weight_decay, or nesterov without momentum > 0 and dampening = 0.
  SGD(ParamSet<T> params, const SGDOptions& options = {}) : params_(std::move(params)), options_(options) {
    const auto& o = options;
    PEFT_REQUIRE(o.lr >= 0 && std::isfinite(o.lr), "SGD: lr must be a finite value >= 0, got ", o.lr);
    PEFT_REQUIRE(o.momentum >= 0, "SGD: momentum must be >= 0, got ", o.momentum);
    PEFT_REQUIRE(o.weight_decay >= 0, "SGD: weight_decay must be >= 0, got ", o.weight_decay);
    PEFT_REQUIRE(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
                 "SGD: nesterov needs momentum > 0 and dampening = 0, got momentum = ", o.momentum,
                 ", dampening = ", o.dampening);
    for (const auto& p : params_.views()) buffers_.push_back(Matrix<T>::Zero(p.value.rows(), p.value.cols()));
  }

  /// One update of every tensor from its current gradient (gradients are not cleared).
  void step() {
    const T lr = static_cast<T>(options_.lr), mu = static_cast<T>(options_.momentum),
            wd = static_cast<T>(options_.weight_decay), damp = static_cast<T>(1.0 - options_.dampening);
    auto& views = params_.views();
    for (std::size_t i = 0; i < views.size(); ++i) {
      auto& p = views[i];
      g_ = p.grad;
      if (wd != T(0)) g_ += wd * p.value;
      if (mu != T(0)) {
        Matrix<T>& b = buffers_[i];
        if (steps_ == 0) b = g_;
        else b = mu * b + damp * g_;
        if (options_.nesterov) g_ += mu * b;
        else g_ = b;
      }
      p.value -= lr * g_;
    }
    ++steps_;
  }

  void zero_grad() { params_.zero_grad(); }     ///< zeroes every gradient in the set
  ParamSet<T>& params() { return params_; }     ///< the tensors it steps
  double lr() const { return options_.lr; }     ///< the current learning rate
  void set_lr(double lr) { options_.lr = lr; }  ///< for schedules: the lr of the next step()
  Index steps() const { return steps_; }        ///< number of step() calls so far

  /// The momentum buffers, step count and lr, for a checkpoint (io/training_state.hpp).
  OptimizerState<T> state() const { return {"SGD", steps_, options_.lr, {{"momentum_buffer", buffers_}}}; }
  /// Continues from a state() of an SGD over tensors of the same shapes.
  /// Throws peft::Error (and changes nothing) for any other state.
  void load_state(const OptimizerState<T>& state) {
    detail::check_optimizer_state("SGD::load_state", state, "SGD", {"momentum_buffer"}, params_);
    buffers_ = state.buffers.at("momentum_buffer");
    steps_ = state.steps;
    options_.lr = state.lr;
  }

 private:
  ParamSet<T> params_;
  SGDOptions options_;
  std::vector<Matrix<T>> buffers_;
  Matrix<T> g_;
  Index steps_ = 0;
};

}  // namespace peft::optim
