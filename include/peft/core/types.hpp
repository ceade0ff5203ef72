#pragma once
// Matrix and vector aliases in PyTorch layout: a batch is N x d row-major,
// a weight is d_out x d_in row-major, so files map onto them without copies.

#include <peft/core/intrinsics.hpp>  // first: see there (GCC 12)

#include <Eigen/Core>

namespace peft {

/// Sizes and indices (Eigen's, signed).
using Index = Eigen::Index;

/// Dense row-major matrix: a batch (N x d) or a weight (d_out x d_in).
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Dense column vector (a bias).
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Writable view of row-major storage owned elsewhere (a parameter block).
template <class T>
using MatrixMap = Eigen::Map<Matrix<T>>;

/// Read-only view of row-major storage owned elsewhere.
template <class T>
using ConstMatrixMap = Eigen::Map<const Matrix<T>>;

/// Read-only argument that binds to a Matrix, a Map or a contiguous row block
/// without copying.
template <class T>
using ConstMatrixRef = Eigen::Ref<const Matrix<T>>;

}  // namespace peft
