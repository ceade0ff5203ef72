#pragma once
// Weighted combinations of trained adapters into one new adapter, as PEFT's
// add_weighted_adapter builds them (MultiAdapted::add_weighted_adapter calls
// these). With weights w_i, LoRA sources B_i·A_i scaled by s_i:
//   Cat     exact: A = [w_1 s_1 A_1; w_2 s_2 A_2; …], B = [B_1 B_2 …], rank Σ r_i
//   Linear  PEFT's cheap approximation, equal ranks: A = Σ sign(w_i s_i)·√|w_i s_i|·A_i,
//           B = Σ √|w_i s_i|·B_i (not Σ w_i ΔW_i: cross terms B_i A_j enter)
//   SVD     ΔW = Σ w_i ΔW_i truncated to rank R by SVD: B = U_R·S_R, A = V_Rᵀ,
//           optionally clamped to ±(the q-quantile of their signed entries;
//           the SVD's sign per singular pair is the library's choice, so a
//           clamped result matches PEFT's only where the signs agree)
//   Dense   ΔW = Σ w_i ΔW_i as a Full adapter (any sources with a dense ΔW)
// The new LoRA has alpha = r (scaling 1) as in PEFT, without rsLoRA, so that
// its ΔW is exactly what the combination says; dropout comes from the first
// source when that is a LoRA.

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <Eigen/SVD>

#include <peft/adapters/full.hpp>
#include <peft/adapters/lora.hpp>
#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// How add_weighted_adapter combines its sources (see core/adapter_combination.hpp).
enum class Combination {
  Cat,     ///< LoRA sources side by side: exact, rank Σ r_i
  Linear,  ///< PEFT's "linear": weighted sums of the A's and of the B's (equal ranks; approximate)
  SVD,     ///< the weighted ΔW sum truncated to a rank by SVD (any sources with a dense ΔW)
  Dense,   ///< the weighted ΔW sum, dense, as a Full adapter (any sources with a dense ΔW)
};

namespace combination {

/// The combined LoRA's config: rank r, alpha r (scaling 1), dropout of `first` if given.
inline LoRAConfig lora_config(Index r, const LoRAConfig* first) {
  LoRAConfig c{.r = r, .alpha = static_cast<double>(r), .init = LoRAInit::None};
  if (first) c.dropout = first->dropout;
  return c;
}

/// Cat: exact, rank Σ r_i.
template <class T>
LoRA<T> cat(const std::vector<const LoRA<T>*>& sources, const std::vector<double>& weights) {
  Index rank = 0;
  for (const auto* s : sources) rank += s->rank();
  const Index d_in = sources.front()->in_features(), d_out = sources.front()->out_features();
  LoRA<T> out(d_in, d_out, lora_config(rank, &sources.front()->config()));
  Index at = 0;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const Index r = sources[i]->rank();
    out.A().middleRows(at, r) = static_cast<T>(weights[i] * static_cast<double>(sources[i]->scaling())) * sources[i]->A();
    out.B().middleCols(at, r) = sources[i]->B();
    at += r;
  }
  return out;
}

/// Linear: PEFT's weighted sums of the factors (equal ranks, checked by the caller).
template <class T>
LoRA<T> linear(const std::vector<const LoRA<T>*>& sources, const std::vector<double>& weights) {
  const Index d_in = sources.front()->in_features(), d_out = sources.front()->out_features();
  LoRA<T> out(d_in, d_out, lora_config(sources.front()->rank(), &sources.front()->config()));
  out.A().setZero();
  out.B().setZero();
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const double ws = weights[i] * static_cast<double>(sources[i]->scaling());
    const double root = std::sqrt(std::abs(ws));
    out.A() += static_cast<T>(ws >= 0 ? root : -root) * sources[i]->A();  // the sign on A only
    out.B() += static_cast<T>(root) * sources[i]->B();
  }
  return out;
}

/// The q-quantile of `values` with linear interpolation between order statistics (torch.quantile's default).
template <class T>
T quantile(std::vector<T> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const std::size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return static_cast<T>(static_cast<double>(values[below]) +
                        fraction * (static_cast<double>(values[above]) - static_cast<double>(values[below])));
}

/// SVD: the best rank-`rank` approximation of ΔW (d_out x d_in) as a LoRA.
template <class T>
LoRA<T> svd(const Matrix<T>& delta, Index rank, std::optional<double> clamp, const LoRAConfig* first) {
  Eigen::BDCSVD<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>> decomposition(
      delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const auto& S = decomposition.singularValues();
  Matrix<T> B = decomposition.matrixU().leftCols(rank) * S.head(rank).asDiagonal();
  Matrix<T> A = decomposition.matrixV().leftCols(rank).transpose();
  if (clamp) {
    std::vector<T> entries(B.data(), B.data() + B.size());
    entries.insert(entries.end(), A.data(), A.data() + A.size());
    const T high = quantile(std::move(entries), *clamp);
    B = B.cwiseMax(-high).cwiseMin(high);
    A = A.cwiseMax(-high).cwiseMin(high);
  }
  LoRA<T> out(delta.cols(), delta.rows(), lora_config(rank, first));
  out.A() = A;
  out.B() = B;
  return out;
}

/// Dense: ΔW itself as a Full adapter (no bias).
template <class T>
Full<T> dense(const Matrix<T>& delta) {
  Full<T> out(delta.cols(), delta.rows(), {.bias = false});
  out.parameters()[0].value = delta;
  return out;
}

}  // namespace combination
}  // namespace peft
