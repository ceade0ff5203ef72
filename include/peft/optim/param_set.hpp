#pragma once
// The parameters an optimizer steps: named views from any number of adapters
// (layer.adapter().parameters(), AdaptedLayer::parameters(), a LoRTA factor
// set). A tensor seen twice (LoRTA layers share their factors) is kept once,
// so it is stepped once per step.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/parameters.hpp>

namespace peft::optim {

/// The named views an optimizer steps, from any number of adapters; a tensor
/// added twice (by address) is kept once.
template <class T>
class ParamSet {
 public:
  ParamSet() = default;
  /// add() of each group in turn, e.g. {layer1.adapter().parameters(), layer2.adapter().parameters()}.
  ParamSet(std::initializer_list<std::vector<Parameter<T>>> groups) {
    for (const auto& g : groups) add(g);
  }

  /// Adds views; duplicates of tensors already present are skipped.
  void add(const std::vector<Parameter<T>>& views) {
    for (const auto& p : views) {
      const bool seen = std::any_of(params_.begin(), params_.end(),
                                    [&](const Parameter<T>& q) { return q.value.data() == p.value.data(); });
      if (!seen) params_.push_back(p);
    }
  }

  std::vector<Parameter<T>>& views() { return params_; }  ///< the distinct tensors, in the order added
  std::size_t size() const { return params_.size(); }     ///< number of distinct tensors
  /// Number of scalars over the distinct tensors.
  Index num_params() const {
    Index n = 0;
    for (const auto& p : params_) n += p.value.size();
    return n;
  }

  /// Zeroes every tensor's gradient.
  void zero_grad() {
    for (auto& p : params_) p.grad.setZero();
  }

  /// √(Σ ‖grad‖²) over every tensor.
  double grad_norm() const {
    double sum = 0;
    for (const auto& p : params_) sum += p.grad.template cast<double>().squaredNorm();
    return std::sqrt(sum);
  }

 private:
  std::vector<Parameter<T>> params_;
};

/// Scales all gradients so their global norm is at most max_norm, as
/// torch.nn.utils.clip_grad_norm_ does (factor max_norm / (norm + 1e-6) when
/// below 1). Returns the norm before clipping.
template <class T>
double clip_grad_norm(ParamSet<T>& params, double max_norm) {
  PEFT_REQUIRE(max_norm > 0 && std::isfinite(max_norm), "clip_grad_norm: max_norm must be a finite value > 0, got ",
               max_norm);
  const double norm = params.grad_norm();
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (auto& p : params.views()) p.grad *= static_cast<T>(coef);
  return norm;
}

}  // namespace peft::optim
