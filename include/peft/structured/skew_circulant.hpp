#pragma once
// Skew-circulant (negacyclic) products, O(n log n) per row.
//   Skew(h)[i][j] = h[i − j] if i ≥ j, −h[n + i − j] otherwise   (first column h)
// The negacyclic transform F makes it pointwise, F(Skew(h)·x) = F(h) ⊙ F(x),
// and is unitary up to √n, so the transpose and the kernel gradient follow
// as for circulants: dx = F⁻¹(conj(ĥ) ⊙ F(g)), dh = F⁻¹(Σ_rows conj(x̂) ⊙ ĝ).

#include <peft/core/types.hpp>
#include <peft/fft/negacyclic.hpp>
#include <peft/structured/circulant.hpp>

namespace peft::structured {

/// The dense n x n matrix Skew(h), the oracle for tests.
template <class T>
Matrix<T> skew_circulant_dense(const Eigen::Ref<const Vector<T>>& h) {
  const Index n = h.size();
  Matrix<T> M(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) M(i, j) = i >= j ? h[i - j] : -h[n + i - j];
  return M;
}

/// Skew(h)·x through the negacyclic transform (fft/negacyclic.hpp), in which
/// it is pointwise; Plan is the real FFT backend under it. The members are
/// Circulant's (size, set_kernel, forward, backward) with Skew(h) for Circ(c).
template <class T, class Plan = fft::RealFFT<T>>
class SkewCirculant : public detail::DiagonalisedProduct<T, fft::NegacyclicFFT<T, Plan>> {
 public:
  /// A product of size n x n; throws peft::Error unless n >= 1.
  explicit SkewCirculant(Index n) : detail::DiagonalisedProduct<T, fft::NegacyclicFFT<T, Plan>>(n, "SkewCirculant") {}
};

}  // namespace peft::structured
