#pragma once
// The products of a frozen layer whose weight is stored in a smaller format
// (LinearBF16's portable path, LinearInt8): W is widened to float32 one panel
// at a time (about 1 MiB, kept in the cache) into a per-thread buffer and
// multiplied there by the configured GEMM backend, so no float32 copy of W
// is ever held. Forward splits W by rows and backward by columns, so that
// each block of Y or dX is written once.
//
// Threads: built with OpenMP, the panels are split over Eigen::nbThreads()
// threads (set_gemm_threads), each widening and multiplying its own with a
// one-thread GEMM. Measured on 2 cores, Eigen's own two-thread GEMM on one
// thin panel at a time ran slower than one thread (int8 base at d = 4096).
// With a BLAS behind Eigen (EIGEN_USE_BLAS) the BLAS keeps its threads and
// the panels run in turn, so the two never oversubscribe the cores.

#include <algorithm>
#include <exception>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <peft/core/types.hpp>

namespace peft::detail {

/// Floats per panel: 256 Ki (1 MiB).
inline constexpr Index kPanelFloats = Index{1} << 18;

/// How many lines (rows or columns of W) of `length` weights go in one panel
/// out of `total`: a multiple of 16 (whole vector registers), at least 16.
inline Index panel_extent(Index length, Index total) {
  const Index lines = std::max<Index>(16, kPanelFloats / length / 16 * 16);
  return std::min(lines, total);
}

/// This thread's panel buffer, grown to `floats` (the layers' forward and
/// backward are const and may run on several threads at once).
inline std::vector<float>& panel_buffer(Index floats) {
  thread_local std::vector<float> buffer;
  if (static_cast<Index>(buffer.size()) < floats) buffer.resize(static_cast<std::size_t>(floats));
  return buffer;
}

/// body(p) for p in [0, count): over Eigen::nbThreads() OpenMP threads when
/// built with OpenMP and without a BLAS, in turn otherwise. An exception from
/// body (std::bad_alloc) may not leave an OpenMP region: the first one is
/// kept and rethrown after the loop.
template <class Body>
void for_each_panel(Index count, Body&& body) {
  std::exception_ptr failure;
#if defined(_OPENMP) && !defined(EIGEN_USE_BLAS)
  const int threads = static_cast<int>(std::clamp<Index>(Eigen::nbThreads(), 1, std::max<Index>(count, 1)));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (Index p = 0; p < count; ++p) {
    try {
      body(p);
    } catch (...) {
#if defined(_OPENMP) && !defined(EIGEN_USE_BLAS)
#pragma omp critical(peft_panel_failure)
#endif
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

/// Y (resized to N x d_out) = X · Wᵀ, W d_out x d_in, where
/// `widen_rows(r, n, out)` writes W's rows [r, r + n) as float32, row-major, to out.
template <class WidenRows>
void forward_by_panels(const ConstMatrixRef<float>& X, Index d_out, Index d_in, WidenRows&& widen_rows,
                       Matrix<float>& Y) {
  Y.resize(X.rows(), d_out);
  const Index rows = panel_extent(d_in, d_out);
  for_each_panel((d_out + rows - 1) / rows, [&](Index p) {
    const Index r = p * rows, n = std::min(rows, d_out - r);
    std::vector<float>& buffer = panel_buffer(rows * d_in);
    widen_rows(r, n, buffer.data());
    const MatrixMap<float> panel(buffer.data(), n, d_in);
    Y.middleCols(r, n).noalias() = X * panel.transpose();
  });
}

/// dX (resized to N x d_in) = dY · W, W d_out x d_in, where
/// `widen_columns(c, n, out)` writes W[:, c : c + n] as float32, d_out x n row-major, to out.
template <class WidenColumns>
void backward_by_panels(const ConstMatrixRef<float>& dY, Index d_out, Index d_in, WidenColumns&& widen_columns,
                        Matrix<float>& dX) {
  dX.resize(dY.rows(), d_in);
  const Index cols = panel_extent(d_out, d_in);
  for_each_panel((d_in + cols - 1) / cols, [&](Index p) {
    const Index c = p * cols, n = std::min(cols, d_in - c);
    std::vector<float>& buffer = panel_buffer(d_out * cols);
    widen_columns(c, n, buffer.data());
    const MatrixMap<float> panel(buffer.data(), d_out, n);
    dX.middleCols(c, n).noalias() = dY * panel;
  });
}

}  // namespace peft::detail
