#pragma once
// Workspace that only grows. An Eigen matrix reallocates whenever its size
// changes, and some products resize their scratch between shapes on every
// call (one row for a kernel's spectrum, N rows for the batch; n/2 + 1 real
// bins, then n/2 skew ones). A Scratch keeps its largest buffer and hands out
// row-major views of the shape asked for, so the steady state allocates
// nothing.

#include <peft/core/types.hpp>

namespace peft {

/// A workspace that only grows and hands out row-major views of any shape, so
/// products that change shapes between calls allocate nothing once warm.
template <class S>
class Scratch {
 public:
  /// Row-major rows x cols view into the buffer.
  using View = Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

  /// A rows x cols view of the buffer (contents unspecified).
  View view(Index rows, Index cols) {
    if (storage_.size() < rows * cols) storage_.resize(rows * cols);
    return View(storage_.data(), rows, cols);
  }

 private:
  Eigen::Matrix<S, Eigen::Dynamic, 1> storage_;
};

}  // namespace peft
