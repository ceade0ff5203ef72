#pragma once
// What Adapted and AdaptedLayer need from the frozen layer under an adapter:
// Linear<T> (a dense float/double weight), or a layer that keeps its weight in
// a smaller format (LinearBF16) and is merged into by dequantising, adding and
// rounding again.

#include <concepts>

#include <peft/core/linear.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// How far rounding moved the weights when a rounded base was (re)written,
/// as by merge/unmerge on a bfloat16 or int8 base: the largest |W_rounded − W|
/// and the largest |W_rounded − W| / |W| over nonzero W.
struct RoundingError {
  double max_abs = 0;  ///< largest absolute change of a weight
  double max_rel = 0;  ///< largest change relative to the weight's magnitude
};

/// A frozen layer over activations of type T: Y = f(X) with dX = dY·W, sizes,
/// an optional bias vector (trainable through Adapted), and flops.
template <class B, class T>
concept FrozenLayer = requires(const B& cb, B& b, const ConstMatrixRef<T>& in, Matrix<T>& out, Index n) {
  { cb.in_features() } -> std::convertible_to<Index>;
  { cb.out_features() } -> std::convertible_to<Index>;
  { cb.has_bias() } -> std::convertible_to<bool>;
  { b.bias() } -> std::same_as<Vector<T>&>;
  cb.forward(in, out);
  cb.backward(in, out);
  { cb.flops(n) } -> std::convertible_to<double>;
};

/// A frozen layer whose weight is stored rounded (bfloat16, int8): merging
/// reads it as the dense Linear<T> it computes (dequantised()) and writes the
/// result back through assign_rounded(W), which reports how far rounding moved W;
/// all_finite() says whether W holds no NaN or Inf (for safe_merge).
template <class B, class T>
concept RoundedFrozenLayer = FrozenLayer<B, T> && requires(const B& cb, B& b, const Matrix<T>& w) {
  { cb.dequantised() } -> std::same_as<Linear<T>>;
  { b.assign_rounded(w) } -> std::same_as<RoundingError>;
  { cb.all_finite() } -> std::convertible_to<bool>;
};

/// Whether B is the dense Linear<T>, whose weight adapters write in place.
template <class B, class T>
inline constexpr bool is_dense_linear = std::same_as<B, Linear<T>>;

}  // namespace peft
