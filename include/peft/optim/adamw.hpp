#pragma once
// AdamW (decoupled weight decay), as torch.optim.AdamW with its defaults:
//   p ← p·(1 − lr·wd)
//   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)

#include <cmath>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/optim/optimizer_state.hpp>
#include <peft/optim/param_set.hpp>

namespace peft::optim {

/// AdamW's hyperparameters, with torch.optim.AdamW's defaults.
struct AdamWOptions {
  double lr = 1e-3;            ///< learning rate, finite and >= 0
  double beta1 = 0.9;          ///< decay of the first moment m, in [0, 1)
  double beta2 = 0.999;        ///< decay of the second moment v, in [0, 1)
  double eps = 1e-8;           ///< added to the bias-corrected √v, > 0
  double weight_decay = 1e-2;  ///< decoupled: p ← p·(1 − lr·wd), >= 0
};

/// AdamW (decoupled weight decay) over a ParamSet, as torch.optim.AdamW; keeps
/// m and v for every tensor.
template <class T>
class AdamW {
 public:
  using Scalar = T;  ///< the parameters' element type

  /// Throws peft::Error for a negative or non-finite lr, betas outside [0, 1),
  /// eps <= 0 or a negative weight_decay.
  AdamW(ParamSet<T> params, const AdamWOptions& options = {}) : params_(std::move(params)), options_(options) {
    const auto& o = options;
    PEFT_REQUIRE(o.lr >= 0 && std::isfinite(o.lr), "AdamW: lr must be a finite value >= 0, got ", o.lr);
    PEFT_REQUIRE(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
                 "AdamW: betas must be in [0, 1), got (", o.beta1, ", ", o.beta2, ")");
    PEFT_REQUIRE(o.eps > 0, "AdamW: eps must be > 0, got ", o.eps);
    PEFT_REQUIRE(o.weight_decay >= 0, "AdamW: weight_decay must be >= 0, got ", o.weight_decay);
    for (const auto& p : params_.views()) {
      m_.push_back(Matrix<T>::Zero(p.value.rows(), p.value.cols()));
      v_.push_back(Matrix<T>::Zero(p.value.rows(), p.value.cols()));
    }
  }

  /// One update of every tensor from its current gradient (gradients are not cleared).
  void step() {
    ++steps_;
    const auto& o = options_;
    const double t = static_cast<double>(steps_);
    const T decay = static_cast<T>(1.0 - o.lr * o.weight_decay);
    const T step_size = static_cast<T>(o.lr / (1.0 - std::pow(o.beta1, t)));
    const T correction2 = static_cast<T>(std::sqrt(1.0 - std::pow(o.beta2, t)));
    const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2), eps = static_cast<T>(o.eps);
    auto& views = params_.views();
    for (std::size_t i = 0; i < views.size(); ++i) {
      auto& p = views[i];
      p.value *= decay;
      m_[i] = b1 * m_[i] + (T(1) - b1) * p.grad;
      v_[i] = b2 * v_[i] + ((T(1) - b2) * p.grad.array().square()).matrix();
      p.value.array() -= step_size * m_[i].array() / (v_[i].array().sqrt() / correction2 + eps);
    }
  }

  void zero_grad() { params_.zero_grad(); }     ///< zeroes every gradient in the set
  ParamSet<T>& params() { return params_; }     ///< the tensors it steps
  double lr() const { return options_.lr; }     ///< the current learning rate
  void set_lr(double lr) { options_.lr = lr; }  ///< for schedules: the lr of the next step()
  Index steps() const { return steps_; }        ///< number of step() calls so far (t)

  /// The moments, step count and lr, for a checkpoint (io/training_state.hpp).
  OptimizerState<T> state() const {
    return {"AdamW", steps_, options_.lr, {{"exp_avg", m_}, {"exp_avg_sq", v_}}};
  }
  /// Continues from a state() of an AdamW over tensors of the same shapes.
  /// Throws peft::Error (and changes nothing) for any other state.
  void load_state(const OptimizerState<T>& state) {
    detail::check_optimizer_state("AdamW::load_state", state, "AdamW", {"exp_avg", "exp_avg_sq"}, params_);
    m_ = state.buffers.at("exp_avg");
    v_ = state.buffers.at("exp_avg_sq");
    steps_ = state.steps;
    options_.lr = state.lr;
  }

 private:
  ParamSet<T> params_;
  AdamWOptions options_;
  std::vector<Matrix<T>> m_, v_;
  Index steps_ = 0;
};

}  // namespace peft::optim
