#pragma once
// Parameter initialisers with PyTorch's semantics (shapes in PyTorch layout,
// fan_in = number of columns of a 2-D weight).

#include <cmath>
#include <type_traits>
#include <utility>

#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft::init {

/// U(-bound, bound) for every entry of a matrix, map or block (row by row,
/// so the values do not depend on the storage order).
template <class Dense>
void uniform(Dense&& m, double bound, Rng& rng) {
  using Scalar = typename std::remove_cvref_t<Dense>::Scalar;
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<Scalar>(rng.uniform(-bound, bound));
}

/// N(0, std^2) for every entry.
template <class Dense>
void normal(Dense&& m, double std, Rng& rng) {
  using Scalar = typename std::remove_cvref_t<Dense>::Scalar;
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<Scalar>(std * rng.normal());
}

/// torch.nn.init.kaiming_uniform_(w, a) on a weight whose fan_in is `fan_in`:
/// bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)).
/// With a = sqrt(5) (nn.Linear's default) this is U(+-1/sqrt(fan_in)).
template <class Dense>
void kaiming_uniform(Dense&& m, Index fan_in, double a, Rng& rng) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  uniform(std::forward<Dense>(m), gain * std::sqrt(3.0 / static_cast<double>(fan_in)), rng);
}

}  // namespace peft::init
