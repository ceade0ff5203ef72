#pragma once
// Inverted dropout on an adapter's input path, as torch.nn.Dropout in training
// mode: each entry kept with probability 1 - p and scaled by 1/(1 - p). The
// mask is kept for the backward pass.

#include <cstdint>

#include <peft/core/error.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// Inverted dropout, as torch.nn.Dropout in training mode: keeps each entry with
/// probability 1 − p, scaled by 1/(1 − p), and remembers the mask for backward.
template <class T>
class Dropout {
 public:
  /// Throws peft::Error unless p is in [0, 1); p = 0 is the identity.
  explicit Dropout(double p = 0.0, std::uint64_t seed = 0) : p_(p), rng_(seed) {
    PEFT_REQUIRE(p >= 0.0 && p < 1.0, "Dropout: probability must be in [0, 1), got ", p);
  }

  double probability() const { return p_; }               ///< p, the drop probability
  bool active() const { return p_ > 0.0; }                ///< whether p > 0 (otherwise skip it)
  void reseed(std::uint64_t seed) { rng_.reseed(seed); }  ///< restarts the mask sequence from `seed`
  Rng& rng() { return rng_; }  ///< the mask generator (checkpoints save and restore its state)

  /// out = X ⊙ mask with a freshly drawn mask.
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& out) {
    mask_.resize(X.rows(), X.cols());
    // Keep when the top 53 random bits land at or above p: one comparison per entry.
    const T keep_scale = static_cast<T>(1.0 / (1.0 - p_));
    for (Index i = 0; i < mask_.size(); ++i) mask_.data()[i] = rng_.uniform() >= p_ ? keep_scale : T(0);
    out.resize(X.rows(), X.cols());
    out.array() = X.array() * mask_.array();
  }

  /// grad ⊙= mask: routes the gradient through the last mask drawn.
  template <class Dense>
  void backward(Dense&& grad) const {
    PEFT_ASSERT(grad.rows() == mask_.rows() && grad.cols() == mask_.cols());
    grad.array() *= mask_.array();
  }

  /// The last mask drawn: 0 or 1/(1 − p) per entry, the shape of the last X.
  const Matrix<T>& mask() const { return mask_; }

 private:
  double p_;
  Rng rng_;
  Matrix<T> mask_;
};

}  // namespace peft
