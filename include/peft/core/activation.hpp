#pragma once
// Elementwise activations for the adapters with a nonlinearity, with their
// derivatives for the backward pass. GELU is the exact (erf) form, as
// torch.nn.GELU() and the SURM adapters use.

#include <cmath>
#include <numbers>

#include <peft/core/intrinsics.hpp>  // before Eigen: see there (GCC 12)

#include <unsupported/Eigen/SpecialFunctions>  // Eigen's vectorised erf

#include <peft/core/types.hpp>

namespace peft {

/// The nonlinearity of an adapter's hidden layer: GELU (the exact, erf form of
/// torch.nn.GELU()), ReLU, or Identity (none).
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

// The same on whole matrices, as array expressions: Eigen vectorises GELU's
// erf for float (std::erf per element costs ~40× more at d = 4096).

/// Φ(z) = (1 + erf(z/√2)) / 2, elementwise.
template <class Derived>
auto gaussian_cdf(const Eigen::ArrayBase<Derived>& z) {
  using T = typename Derived::Scalar;
  return T(0.5) * (T(1) + (z * static_cast<T>(std::numbers::sqrt2 / 2)).erf());
}

/// out = σ(z), or out += σ(z) with `add`; out is sized (or must match with `add`).
template <class T>
void activation_into(Activation f, const Matrix<T>& z, Matrix<T>& out, bool add) {
  if (!add) out.resize(z.rows(), z.cols());
  auto result = out.array();
  const auto x = z.array();
  switch (f) {
    case Activation::GELU:
      if (add) result += x * gaussian_cdf(x);
      else result = x * gaussian_cdf(x);
      return;
    case Activation::ReLU:
      if (add) result += x.max(T(0));
      else result = x.max(T(0));
      return;
    case Activation::Identity:
      if (add) result += x;
      else result = x;
      return;
  }
}

/// g ⊙= σ'(z) elementwise (g the gradient with respect to σ(z), same shape).
template <class T>
void multiply_by_derivative(Activation f, const Matrix<T>& z, Matrix<T>& g) {
  const auto x = z.array();
  switch (f) {
    case Activation::GELU: {
      const T inv_sqrt_2pi = static_cast<T>(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
      g.array() *= gaussian_cdf(x) + x * (T(-0.5) * x.square()).exp() * inv_sqrt_2pi;
      return;
    }
    case Activation::ReLU: g.array() *= (x > T(0)).template cast<T>(); return;
    case Activation::Identity: return;
  }
}

}  // namespace detail
}  // namespace peft
