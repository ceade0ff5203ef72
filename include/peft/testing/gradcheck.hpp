#pragma once
// Finite-difference gradient checking, for our tests and for users who write
// their own adapters. Central differences in double:
//   ∂f/∂x_i ≈ (f(x + h·e_i) − f(x − h·e_i)) / 2h,   error O(h²).
// The error measure is the Frobenius-norm relative error
//   ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖, tiny).

#include <algorithm>
#include <string>
#include <vector>

#include <peft/core/types.hpp>

namespace peft::testing {

/// Frobenius-norm relative error between two same-shaped arrays (0 when both
/// are zero).
template <class A, class B>
double relative_error(const Eigen::DenseBase<A>& analytic, const Eigen::DenseBase<B>& numeric) {
  const double diff = (analytic.derived().template cast<double>() - numeric.derived().template cast<double>()).norm();
  const double scale = std::max({analytic.derived().template cast<double>().norm(),
                                 numeric.derived().template cast<double>().norm(), 1e-300});
  return diff / scale;
}

/// Central-difference gradient of the scalar function `f()` with respect to
/// every entry of `x`, which `f` reads. `x` is perturbed in place and restored.
template <class F, class Dense>
Matrix<double> numerical_gradient(F&& f, Dense&& x, double h = 1e-6) {
  Matrix<double> g(x.rows(), x.cols());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) {
      const double saved = x(i, j);
      x(i, j) = saved + h;
      const double up = f();
      x(i, j) = saved - h;
      const double down = f();
      x(i, j) = saved;
      g(i, j) = (up - down) / (2.0 * h);
    }
  return g;
}

/// One tensor's result from check_gradients.
struct GradientError {
  std::string name;  ///< "X" or the parameter's name
  double error;      ///< relative error, see the header comment
};

/// Checks a layer's hand-written backward (an Adapted<A> or AdaptedLayer over
/// double, or anything with forward(X), backward(dY), zero_grad() and
/// parameters()) against central differences of the loss L = Σ Y ⊙ dY, for
/// the input X and every trainable parameter (a trainable base bias too).
/// The forward must be deterministic (no dropout). Leaves the gradients
/// holding the analytic ones.
template <class Layer>
std::vector<GradientError> check_gradients(Layer& layer, const Matrix<double>& X, const Matrix<double>& dY,
                                           double h = 1e-6) {
  layer.zero_grad();
  layer.forward(X);
  const Matrix<double> dX = layer.backward(dY);

  Matrix<double> x = X;
  auto loss = [&] { return (layer.forward(x).array() * dY.array()).sum(); };
  std::vector<GradientError> errors;
  errors.push_back({"X", relative_error(dX, numerical_gradient(loss, x, h))});
  for (auto& p : layer.parameters())
    errors.push_back({std::string(p.name), relative_error(p.grad, numerical_gradient(loss, p.value, h))});
  return errors;
}

}  // namespace peft::testing
