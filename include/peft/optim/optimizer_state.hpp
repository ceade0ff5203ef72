#pragma once
// What an optimizer carries from one step to the next (AdamW's moments and
// step count, SGD's momentum buffers), as a value a training checkpoint can
// save and give back (io/training_state.hpp) so that a resumed run continues
// bit for bit.

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/optim/param_set.hpp>

namespace peft::optim {

/// An optimizer's state: its kind, steps taken, current lr, and its buffers
/// by name (PyTorch's names: "exp_avg" and "exp_avg_sq" for AdamW,
/// "momentum_buffer" for SGD), one tensor per parameter in params() order.
template <class T>
struct OptimizerState {
  std::string kind;  ///< "AdamW" or "SGD"
  Index steps = 0;   ///< step() calls so far
  double lr = 0;     ///< the lr of the next step() (a schedule's last set_lr)
  std::map<std::string, std::vector<Matrix<T>>> buffers;  ///< per buffer name, one tensor per parameter
};

namespace detail {

/// Throws peft::Error, naming `who`, unless `state` is one that `kind`
/// over `params` could have produced: same kind, steps >= 0, a finite lr >= 0,
/// exactly the buffers `names`, each with one tensor per parameter of its shape.
template <class T>
void check_optimizer_state(const char* who, const OptimizerState<T>& state, const std::string& kind,
                           const std::vector<std::string>& names, ParamSet<T>& params) {
  PEFT_REQUIRE(state.kind == kind, who, ": expected the state of a ", kind, " optimizer, got '", state.kind, "'");
  PEFT_REQUIRE(state.steps >= 0, who, ": expected steps >= 0, got ", state.steps);
  PEFT_REQUIRE(state.lr >= 0 && std::isfinite(state.lr), who, ": expected a finite lr >= 0, got ", state.lr);
  PEFT_REQUIRE(state.buffers.size() == names.size(), who, ": expected ", names.size(), " buffer(s), got ",
               state.buffers.size());
  const auto& views = params.views();
  for (const auto& name : names) {
    const auto it = state.buffers.find(name);
    PEFT_REQUIRE(it != state.buffers.end(), who, ": expected a buffer named '", name, "'");
    PEFT_REQUIRE(it->second.size() == views.size(), who, ": buffer '", name, "' must have one tensor per parameter (",
                 views.size(), "), got ", it->second.size());
    for (std::size_t i = 0; i < views.size(); ++i)
      PEFT_REQUIRE(it->second[i].rows() == views[i].value.rows() && it->second[i].cols() == views[i].value.cols(),
                   who, ": buffer '", name, "' tensor ", i, " (", views[i].name, ") must be ",
                   ::peft::detail::shape_str(views[i].value.rows(), views[i].value.cols()), ", got ",
                   ::peft::detail::shape_str(it->second[i].rows(), it->second[i].cols()));
  }
}

}  // namespace detail
}  // namespace peft::optim
