#pragma once
// Elementwise activations for the adapters with a nonlinearity, with their
// derivatives for the backward pass. GELU is the exact (erf) form, as
// torch.nn.GELU() and the SURM adapters use.

#include <cmath>
#include <numbers>

#include <peft/core/types.hpp>

namespace peft {

enum class Activation { GELU, ReLU, Identity };

namespace detail {

template <class T>
T activate(Activation f, T z) {
  switch (f) {
    case Activation::GELU: return T(0.5) * z * (T(1) + std::erf(z * static_cast<T>(std::numbers::sqrt2 / 2)));
    case Activation::ReLU: return z > T(0) ? z : T(0);
    case Activation::Identity: return z;
  }
  return z;
}

/// dσ/dz; GELU: Φ(z) + z·φ(z).
template <class T>
T activate_derivative(Activation f, T z) {
  switch (f) {
    case Activation::GELU: {
      const T cdf = T(0.5) * (T(1) + std::erf(z * static_cast<T>(std::numbers::sqrt2 / 2)));
      const T pdf = std::exp(T(-0.5) * z * z) * static_cast<T>(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
      return cdf + z * pdf;
    }
    case Activation::ReLU: return z > T(0) ? T(1) : T(0);
    case Activation::Identity: return T(1);
  }
  return T(1);
}

}  // namespace detail
}  // namespace peft
