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

/// The calling thread's matrix number Slot for Owner's const (inference)
/// paths: a layer's infer() may run on several threads at once, so its
/// working memory cannot live in the layer. Each thread keeps one per
/// (Owner, scalar, Slot), shared by every instance of Owner on that thread and
/// reused from call to call; it reallocates only when the element count changes.
template <class Owner, class S, int Slot = 0>
Matrix<S>& thread_matrix(Index rows, Index cols) {
  thread_local Matrix<S> m;
  m.resize(rows, cols);
  return m;
}

/// Like thread_matrix, but a Scratch that only grows (for shapes that alternate).
template <class Owner, class S, int Slot = 0>
Scratch<S>& thread_scratch() {
  thread_local Scratch<S> scratch;
  return scratch;
}

}  // namespace peft
