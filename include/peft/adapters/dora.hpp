#pragma once
// DoRA (LoRA with use_dora=True) as Hugging Face PEFT 0.21 does it:
//   Y = c ⊙ (X·Wᵀ + s·X·Aᵀ·Bᵀ) + b,   c = m / ‖W + s·B·A‖ (row norms, d_out; detached: no gradient)
// i.e. PEFT's X·Wᵀ + b + (c − 1)⊙(X·Wᵀ) + c⊙(s·X·Aᵀ·Bᵀ). With dropout D in training
// PEFT feeds D(X) to both adapter terms: Y = X·Wᵀ + b + (c − 1)⊙(D(X)·Wᵀ) + c⊙(s·D(X)·Aᵀ·Bᵀ).
// lora_A: r x d_in, lora_B: d_out x r (init as LoRA), lora_magnitude_vector m: d_out,
// initialised to ‖W + s·B·A‖ when the adapter first meets its base. s = α/r (rsLoRA α/√r).
// Merged: W ← c ⊙ (W + s·B·A) row-wise, b unchanged; unmerge: W ← W / c − s·B·A with the
// norm cached at merge. lora_bias is refused with DoRA, as PEFT refuses it.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <peft/adapters/lora.hpp>
#include <peft/core/adapter.hpp>
#include <peft/core/dropout.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/linear.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// DoRA's hyperparameters: LoRA's (PEFT's LoraConfig with use_dora=True), without lora_bias.
struct DoRAConfig {
  Index r = 8;             ///< rank, >= 1
  double alpha = 8.0;      ///< lora_alpha, > 0
  bool rslora = false;     ///< scale by α/√r instead of α/r
  double dropout = 0.0;    ///< lora_dropout, in [0, 1): in training PEFT then runs D(X)·Wᵀ as well
  LoRAInit init = LoRAInit::KaimingUniform;  ///< init_lora_weights, as LoRA
  std::uint64_t seed = 0;  ///< seeds the init and the dropout masks
};

namespace detail::dora {

// The weight norm needs G = W·Aᵀ (d_out x r) and ‖W_i‖² once per forward: one
// pass over W. Eigen's GEMM packs all of W for an 8-column product (~13
// GFLOP/s at 4096²); this kernel streams W once, R rows at a time against 4
// rows of A, in lane vectors the compiler maps onto the target's registers
// (AVX-512: 4 x 4 accumulators + 4 squares; narrower targets: 2 rows).
#if defined(__AVX512F__)
inline constexpr int kVectorBytes = 64, kRowBlock = 4;
#elif defined(__AVX__)
inline constexpr int kVectorBytes = 32, kRowBlock = 2;
#else
inline constexpr int kVectorBytes = 16, kRowBlock = 2;
#endif
inline constexpr int kColBlock = 4;

template <class T>
struct Lane {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  static constexpr int size = kVectorBytes / static_cast<int>(sizeof(T));
};

template <class T>
inline T lane_sum(const typename Lane<T>::type& v) {
  T s = 0;
  for (int l = 0; l < Lane<T>::size; ++l) s += v[l];
  return s;
}

/// G[i][j] = W_i·A_j for R rows of W (stride K) and J rows of A (stride K);
/// with Self also sq[i] = ‖W_i‖².
template <class T, int R, int J, bool Self>
inline void row_block(const T* W, const T* A, Index K, T* G, Index ldg, T* sq) {
  using V = typename Lane<T>::type;
  constexpr int L = Lane<T>::size;
  V acc[R][J];
  V self[R];
  for (int i = 0; i < R; ++i) {
    self[i] = V{};
    for (int j = 0; j < J; ++j) acc[i][j] = V{};
  }
  Index k = 0;
  for (; k + L <= K; k += L) {
    V w[R];
    for (int i = 0; i < R; ++i) std::memcpy(&w[i], W + i * K + k, sizeof(V));
    for (int j = 0; j < J; ++j) {
      V a;
      std::memcpy(&a, A + j * K + k, sizeof(V));
      for (int i = 0; i < R; ++i) acc[i][j] += w[i] * a;
    }
    if constexpr (Self)
      for (int i = 0; i < R; ++i) self[i] += w[i] * w[i];
  }
  for (int i = 0; i < R; ++i) {
    const T* w = W + i * K;
    for (int j = 0; j < J; ++j) {
      T s = lane_sum<T>(acc[i][j]);
      for (Index t = k; t < K; ++t) s += w[t] * A[j * K + t];
      G[i * ldg + j] = s;
    }
    if constexpr (Self) {
      T s = lane_sum<T>(self[i]);
      for (Index t = k; t < K; ++t) s += w[t] * w[t];
      sq[i] = s;
    }
  }
}

/// R rows of W against every row of A (r of them), 4 at a time.
template <class T, int R>
inline void row_group(const T* W, const T* A, Index r, Index K, T* G, T* sq) {
  for (Index j = 0; j < r; j += kColBlock) {
    const Index J = std::min<Index>(kColBlock, r - j);
    const T* a = A + j * K;
    T* g = G + j;
    if (j == 0) {
      switch (J) {
        case 4: row_block<T, R, 4, true>(W, a, K, g, r, sq); break;
        case 3: row_block<T, R, 3, true>(W, a, K, g, r, sq); break;
        case 2: row_block<T, R, 2, true>(W, a, K, g, r, sq); break;
        default: row_block<T, R, 1, true>(W, a, K, g, r, sq); break;
      }
    } else {
      switch (J) {
        case 4: row_block<T, R, 4, false>(W, a, K, g, r, sq); break;
        case 3: row_block<T, R, 3, false>(W, a, K, g, r, sq); break;
        case 2: row_block<T, R, 2, false>(W, a, K, g, r, sq); break;
        default: row_block<T, R, 1, false>(W, a, K, g, r, sq); break;
      }
    }
  }
}

/// G = W·Aᵀ (d_out x r) and sq_i = ‖W_i‖² in one pass over W (d_out x K) and A (r x K), row-major.
template <class T>
void weight_products(const T* W, Index d_out, Index K, const T* A, Index r, Matrix<T>& G, Vector<T>& sq) {
  G.resize(d_out, r);
  sq.resize(d_out);
  Index i = 0;
  for (; i + kRowBlock <= d_out; i += kRowBlock)
    row_group<T, kRowBlock>(W + i * K, A, r, K, G.data() + i * r, sq.data() + i);
  for (; i < d_out; ++i) row_group<T, 1>(W + i * K, A, r, K, G.data() + i * r, sq.data() + i);
}

/// Scratch of row_norms, kept by the adapter so that a training step allocates nothing.
template <class T>
struct NormScratch {
  Matrix<T> G;                 // W·Aᵀ
  Vector<T> sq;                // ‖W_i‖²
  Matrix<double> A, gram, BM;  // A in double, A·Aᵀ, B·(A·Aᵀ)
};

/// ‖W_i + s·(B·A)_i‖ for every row (PEFT's get_weight_norm) without forming
/// W + s·B·A: ‖W_i‖² + 2s·B_i·(W·Aᵀ)_i + s²·B_i·(A·Aᵀ)·B_iᵀ, summed in double.
/// A row whose sum cancels (below 1/16 of its terms' magnitude, so that more
/// than 4 of T's bits would be lost) is summed densely instead.
template <class T>
void row_norms(const Matrix<T>& W, const ConstMatrixRef<T>& A, const ConstMatrixRef<T>& B, T s, Vector<T>& norm,
               NormScratch<T>& scratch) {
  const Index d_out = W.rows(), K = W.cols(), r = A.rows();
  weight_products<T>(W.data(), d_out, K, A.data(), r, scratch.G, scratch.sq);
  scratch.A = A.template cast<double>();
  scratch.gram.noalias() = scratch.A * scratch.A.transpose();
  scratch.BM.noalias() = B.template cast<double>() * scratch.gram;
  norm.resize(d_out);
  const double sd = static_cast<double>(s);
  for (Index i = 0; i < d_out; ++i) {
    double cross = 0, cross_abs = 0, quad = 0;
    for (Index j = 0; j < r; ++j) {
      const double b = static_cast<double>(B(i, j)), bg = b * static_cast<double>(scratch.G(i, j));
      cross += bg;
      cross_abs += std::abs(bg);
      quad += scratch.BM(i, j) * b;
    }
    const double sq = static_cast<double>(scratch.sq(i));
    double n2 = sq + 2.0 * sd * cross + sd * sd * quad;
    const double magnitude = sq + 2.0 * sd * cross_abs + sd * sd * std::abs(quad);
    if (!(n2 * 16.0 > magnitude)) {  // cancellation (or NaN): the row itself, densely
      n2 = (W.row(i).template cast<double>() + sd * (B.row(i).template cast<double>() * scratch.A)).squaredNorm();
    }
    norm(i) = static_cast<T>(std::sqrt(n2));
  }
}

}  // namespace detail::dora

/// DoRA: LoRA's lora_A (r x d_in) and lora_B (d_out x r) plus lora_magnitude_vector m
/// (d_out); Y = c ⊙ (X·Wᵀ + s·X·Aᵀ·Bᵀ) + b with c = m / ‖W + s·B·A‖ row-wise, the norm
/// treated as a constant in backward (PEFT detaches it). It reads the base's W and b
/// (UsesBase): inside Adapted it always sees its own base.
///
/// The magnitude starts as PEFT's: the row norms of W + s·B·A of the first base the
/// adapter meets (Adapted's constructor, or a DoRA built from the base), unless values
/// were written into it before (a loaded file); init_magnitude(base) sets it again.
/// Until then it holds NaN, so that a magnitude that never met a base cannot pass
/// for a trained one.
template <class T>
class DoRA : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Initialised as `config.init` says, the magnitude pending until the first base
  /// (see the class comment); throws peft::Error for non-positive sizes, r < 1,
  /// a non-finite or non-positive alpha, or dropout outside [0, 1).
  DoRA(Index d_in, Index d_out, const DoRAConfig& config = {})
      : d_in_(d_in), d_out_(d_out), config_(config), dropout_(validated(d_in, d_out, config).dropout, config.seed + 1) {
    scaling_ = static_cast<T>(config.rslora ? config.alpha / std::sqrt(static_cast<double>(config.r))
                                            : config.alpha / static_cast<double>(config.r));
    params_.add("lora_A", {config.r, d_in});
    params_.add("lora_B", {d_out, config.r});
    params_.add("lora_magnitude_vector", {d_out});
    Rng rng(config.seed);
    switch (config.init) {
      case LoRAInit::KaimingUniform:
        init::kaiming_uniform(A(), d_in, std::sqrt(5.0), rng);
        break;
      case LoRAInit::Gaussian:
        init::normal(A(), 1.0 / static_cast<double>(config.r), rng);
        break;
      case LoRAInit::None:
        init::kaiming_uniform(A(), d_in, std::sqrt(5.0), rng);
        init::kaiming_uniform(B(), config.r, std::sqrt(5.0), rng);
        break;
    }
    magnitude().setConstant(std::numeric_limits<T>::quiet_NaN());
  }

  /// As above, with the magnitude initialised from `base` right away (PEFT's init).
  explicit DoRA(const Linear<T>& base, const DoRAConfig& config = {}) : DoRA(base.in_features(), base.out_features(), config) {
    init_magnitude(base);
  }

  Index in_features() const { return d_in_; }           ///< d_in
  Index out_features() const { return d_out_; }         ///< d_out
  Index rank() const { return config_.r; }              ///< r
  T scaling() const { return scaling_; }                ///< s = α/r, or α/√r with rslora
  const DoRAConfig& config() const { return config_; }  ///< the configuration it was built with

  /// lora_A (r x d_in), lora_B (d_out x r) and lora_magnitude_vector (1 x d_out), views
  /// into the parameter block.
  ///@{
  MatrixMap<T> A() { return params_.value(kA); }
  MatrixMap<T> B() { return params_.value(kB); }
  MatrixMap<T> magnitude() { return params_.value(kM); }
  ConstMatrixMap<T> A() const { return params_.value(kA); }
  ConstMatrixMap<T> B() const { return params_.value(kB); }
  ConstMatrixMap<T> magnitude() const { return params_.value(kM); }
  ///@}

  /// ‖W + s·B·A‖ row by row (d_out), PEFT's get_weight_norm, for this adapter's A and B.
  Vector<T> weight_norm(const Linear<T>& base) const {
    check_base("DoRA::weight_norm", base);
    Vector<T> norm;
    detail::dora::NormScratch<T> scratch;
    detail::dora::row_norms<T>(base.weight(), A(), B(), scaling_, norm, scratch);
    return norm;
  }

  /// m = ‖W + s·B·A‖ for `base` (what PEFT does when it creates the adapter).
  void init_magnitude(const Linear<T>& base) {
    magnitude().row(0) = weight_norm(base).transpose();
    pending_ = false;
  }

  /// The layer it adapts (Adapted calls this before every use; see UsesBase). The
  /// first call initialises a pending magnitude that nothing was written into.
  void use_base(const Linear<T>& base) {
    check_base("DoRA::use_base", base);
    base_ = &base;
    if (pending_) {
      if (magnitude().array().isNaN().all()) init_magnitude(base);
      pending_ = false;
    }
  }

  /// Matrix-product flops of forward + backward for N rows: LoRA's six thin GEMMs,
  /// the pass over W for the norm (W·Aᵀ and ‖W_i‖²), and with dropout in training
  /// the D(X)·Wᵀ and its backward that PEFT adds.
  double flops(Index N) const {
    const double n = static_cast<double>(N), r = static_cast<double>(config_.r);
    const double din = static_cast<double>(d_in_), dout = static_cast<double>(d_out_);
    double f = 6.0 * n * r * (din + dout) + 2.0 * dout * din * (r + 1.0);
    if (training_ && dropout_.active()) f += 4.0 * n * din * dout;
    return f;
  }

  void set_training(bool training) { training_ = training; }  ///< dropout applies only in training (the default)

  bool training() const { return training_; }                 ///< whether in training mode
  /// The dropout mask generator, for training checkpoints (io/training_state.hpp).
  std::vector<Rng*> random_streams() { return {&dropout_.rng()}; }

  /// The dense ΔW with Y = X·(W + ΔW)ᵀ + b (no dropout): c ⊙ (W + s·B·A) − W for the
  /// unmerged `base`; while merged into `base`, its weight minus the restored one.
  Matrix<T> delta_weight(const Linear<T>& base) const {
    check_base("DoRA::delta_weight", base);
    const Matrix<T> lora = lora_delta();
    if (merged_) {
      const Vector<T> c = magnitude().row(0).transpose().cwiseQuotient(merged_norm_);
      Matrix<T> restored = base.weight();
      restored.array().colwise() /= c.array();
      restored -= lora;
      return base.weight() - restored;
    }
    const Vector<T> c = magnitude().row(0).transpose().cwiseQuotient(weight_norm(base));
    Matrix<T> merged = base.weight() + lora;
    merged.array().colwise() *= c.array();
    return merged - base.weight();
  }

  /// W ← c ⊙ (W + s·B·A) with c = m / ‖W + s·B·A‖, caching the norm for unmerge as
  /// PEFT does; b is left as it is. Throws peft::Error (base unchanged) if some
  /// c_i is 0 or not finite: that row could not be restored.
  void merge_into(Linear<T>& base) {
    check_base("DoRA::merge", base);
    Vector<T> norm = weight_norm(base);
    const Vector<T> c = magnitude().row(0).transpose().cwiseQuotient(norm);
    for (Index i = 0; i < d_out_; ++i)
      PEFT_REQUIRE(std::isfinite(c(i)) && c(i) != T(0), "DoRA::merge: row ", i, " would be scaled by m / ‖W + s·B·A‖ = ",
                   magnitude()(0, i), " / ", norm(i), "; expected a finite, non-zero factor (unmerge divides by it)");
    base.weight() += lora_delta();
    base.weight().array().colwise() *= c.array();
    merged_norm_ = std::move(norm);
    merged_ = true;
  }
  /// W ← W / c − s·B·A with c from the norm cached at merge (PEFT's unmerge).
  void unmerge_from(Linear<T>& base) {
    check_base("DoRA::unmerge", base);
    PEFT_REQUIRE(merged_, "DoRA::unmerge: not merged (no norm cached by merge)");
    const Vector<T> c = magnitude().row(0).transpose().cwiseQuotient(merged_norm_);
    base.weight().array().colwise() /= c.array();
    base.weight() -= lora_delta();
    merged_ = false;
  }

  /// The output edit runs unless the last forward applied dropout (then forward_delta
  /// adds PEFT's whole dropout term itself).
  bool edits_output() const { return !dropped_; }
  /// The edit is c ⊙ (H − b) + b: b's gradient is dY.
  bool output_edit_passes_bias() const { return true; }

  /// forward_delta in eval mode (Y += s·X·Aᵀ·Bᵀ), keeping nothing (const:
  /// several threads may call it at once); infer_output applies the magnitude.
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("DoRA::infer_delta", X, Y, d_in_, d_out_);
    Matrix<T>& h = thread_matrix<DoRA, T>(X.rows(), config_.r);
    h.noalias() = X * A().transpose();
    Y.noalias() += (scaling_ * h) * B().transpose();
  }

  /// H ← c ⊙ (H − b) + b with c = m / ‖W + s·B·A‖ computed from `base` now,
  /// keeping nothing (const: several threads may call it at once).
  void infer_output(const Linear<T>& base, Matrix<T>& H) const {
    check_base("DoRA::infer_output", base);
    PEFT_REQUIRE(H.cols() == d_out_, "DoRA::infer_output: expected H with d_out = ", d_out_, " columns, got ",
                 detail::shape_str(H.rows(), H.cols()));
    thread_local detail::dora::NormScratch<T> scratch;
    thread_local Vector<T> scale;
    detail::dora::row_norms<T>(base.weight(), A(), B(), scaling_, scale, scratch);
    scale.array() = magnitude().row(0).transpose().array() / scale.array();
    const auto c = scale.transpose().array();
    if (base.has_bias()) {
      const auto b = base.bias().transpose().array();
      for (Index n = 0; n < H.rows(); ++n) H.row(n).array() = (H.row(n).array() - b) * c + b;
    } else {
      H.array().rowwise() *= c;
    }
  }

  /// Computes c = m / ‖W + s·B·A‖ for this step, then Y += s·X·Aᵀ·Bᵀ (the output edit
  /// scales it with X·Wᵀ); in training with dropout, Y += (c − 1)⊙(D(X)·Wᵀ) + c⊙(s·D(X)·Aᵀ·Bᵀ).
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("DoRA::forward_delta", X, Y, d_in_, d_out_);
    const Linear<T>& base = bound_base("DoRA::forward_delta");
    detail::dora::row_norms<T>(base.weight(), A(), B(), scaling_, norm_, scratch_);
    scale_ = magnitude().row(0).transpose().cwiseQuotient(norm_);
    dropped_ = training_ && dropout_.active();
    if (dropped_) {
      dropout_.forward(X, x_);
    } else {
      x_ = X;
    }
    h_.noalias() = x_ * A().transpose();
    if (!dropped_) {
      Y.noalias() += (scaling_ * h_) * B().transpose();
      return;
    }
    z_.noalias() = x_ * base.weight().transpose();  // the product PEFT pays with dropout
    Y -= z_;
    z_.noalias() += (scaling_ * h_) * B().transpose();
    Y.array() += z_.array().rowwise() * scale_.transpose().array();
  }

  /// H ← c ⊙ (H − b) + b, keeping Z = H − b (X·Wᵀ + s·X·Aᵀ·Bᵀ) for the magnitude's gradient.
  void forward_output(Matrix<T>& H) {
    PEFT_REQUIRE(H.cols() == d_out_ && scale_.size() == d_out_, "DoRA::forward_output: expected H with d_out = ",
                 d_out_, " columns after forward_delta, got ", detail::shape_str(H.rows(), H.cols()));
    const Linear<T>& base = bound_base("DoRA::forward_output");
    z_.resize(H.rows(), H.cols());
    const auto c = scale_.transpose().array();
    for (Index n = 0; n < H.rows(); ++n) {  // row by row: one pass over H
      if (base.has_bias()) {
        z_.row(n) = H.row(n) - base.bias().transpose();
        H.row(n).array() = z_.row(n).array() * c + base.bias().transpose().array();
      } else {
        z_.row(n) = H.row(n);
        H.row(n).array() *= c;
      }
    }
  }

  /// dm += Σ_n dY ⊙ Z / ‖·‖ (the norm a constant), then dH = c ⊙ dY in place.
  void backward_output(Matrix<T>& dH) {
    PEFT_REQUIRE(dH.rows() == z_.rows() && dH.cols() == d_out_, "DoRA::backward_output: dY must be ",
                 detail::shape_str(z_.rows(), d_out_), " (N x d_out of the last forward), got ",
                 detail::shape_str(dH.rows(), dH.cols()));
    dm_.setZero(d_out_);
    const auto c = scale_.transpose().array();
    for (Index n = 0; n < dH.rows(); ++n) {  // one pass: the magnitude's sum, then the scaling
      dm_.transpose().array() += dH.row(n).array() * z_.row(n).array();
      dH.row(n).array() *= c;
    }
    params_.grad(kM).row(0).array() += dm_.transpose().array() / norm_.transpose().array();
  }

  /// Without dropout (dY already c ⊙ dY from the output edit): LoRA's dB += s·dYᵀ·H,
  /// dA += (s·dY·B)ᵀ·X, dX += s·dY·B·A. With dropout: dm += Σ_n dY ⊙ Z / ‖·‖ and,
  /// with G = c ⊙ dY, dB += s·Gᵀ·H, dA += (s·G·B)ᵀ·D(X), dX += mask ⊙ (((c − 1) ⊙ dY)·W + s·G·B·A).
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(h_.rows() == dY.rows() && dY.cols() == d_out_, "DoRA::backward_delta: dY must be ",
                 detail::shape_str(h_.rows(), d_out_), " (N x d_out of the last forward), got ",
                 detail::shape_str(dY.rows(), dY.cols()));
    PEFT_ASSERT(dX.rows() == dY.rows() && dX.cols() == d_in_);
    if (!dropped_) {
      add_lora_grads(dY);
      dX.noalias() += dh_ * A();
      return;
    }
    const Linear<T>& base = bound_base("DoRA::backward_delta");
    add_magnitude_grad(dY);
    g_.array() = dY.array().rowwise() * scale_.transpose().array();
    add_lora_grads(g_);
    g_.array() = dY.array().rowwise() * (scale_.array() - T(1)).transpose();
    dx_.noalias() = g_ * base.weight();
    dx_.noalias() += dh_ * A();
    dropout_.backward(dx_);
    dX += dx_;
  }

 private:
  static constexpr Index kA = 0, kB = 1, kM = 2;

  /// s·B·A (d_out x d_in), as LoRA's ΔW.
  Matrix<T> lora_delta() const { return (scaling_ * B()) * A(); }

  /// dB += s·Gᵀ·H, dh = s·G·B, dA += dhᵀ·X (X the last forward's, dropped or not).
  void add_lora_grads(const ConstMatrixRef<T>& G) {
    params_.grad(kB).noalias() += (scaling_ * G.transpose()) * h_;
    dh_.noalias() = (scaling_ * G) * B();
    params_.grad(kA).noalias() += dh_.transpose() * x_;
  }

  /// dm += Σ_n dY ⊙ Z / ‖·‖ (summed row by row: Eigen's colwise() walks a row-major matrix by columns).
  void add_magnitude_grad(const ConstMatrixRef<T>& dY) {
    dm_.setZero(d_out_);
    for (Index n = 0; n < dY.rows(); ++n) dm_.array() += dY.row(n).transpose().array() * z_.row(n).transpose().array();
    params_.grad(kM).row(0).array() += dm_.transpose().array() / norm_.transpose().array();
  }

  const Linear<T>& bound_base(const char* who) const {
    PEFT_REQUIRE(base_ != nullptr, who, ": no base layer; DoRA reads W and b, call use_base(base) first "
                 "(Adapted does)");
    return *base_;
  }

  void check_base(const char* who, const Linear<T>& base) const {
    PEFT_REQUIRE(base.in_features() == d_in_ && base.out_features() == d_out_, who, ": base must be d_out x d_in = ",
                 detail::shape_str(d_out_, d_in_), ", got ",
                 detail::shape_str(base.out_features(), base.in_features()));
  }

  static const DoRAConfig& validated(Index d_in, Index d_out, const DoRAConfig& c) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "DoRA: d_in and d_out must be positive, got d_in = ", d_in,
                 ", d_out = ", d_out);
    PEFT_REQUIRE(c.r >= 1, "DoRA: rank must be >= 1, got ", c.r);
    PEFT_REQUIRE(c.alpha > 0.0 && std::isfinite(c.alpha), "DoRA: alpha must be a finite value > 0, got ", c.alpha);
    PEFT_REQUIRE(c.dropout >= 0.0 && c.dropout < 1.0, "DoRA: dropout must be in [0, 1), got ", c.dropout);
    return c;
  }

  Index d_in_, d_out_;
  DoRAConfig config_;
  T scaling_{};
  Dropout<T> dropout_;
  bool training_ = true;
  bool dropped_ = false;   // whether the last forward applied dropout
  bool pending_ = true;    // the magnitude waits for its first base
  bool merged_ = false;    // merged into a base: merged_norm_ holds the norm of the merge
  const Linear<T>* base_ = nullptr;  // set by use_base for the call at hand
  Vector<T> norm_, scale_, merged_norm_;  // ‖W + s·B·A‖ and c = m / ‖·‖ of the last forward
  Vector<T> dm_;                          // Σ_n dY ⊙ Z, before the division by the norm
  detail::dora::NormScratch<T> scratch_;
  // Forward cache and backward scratch, reused across calls.
  Matrix<T> x_, h_, z_, dh_, dx_, g_;
};

}  // namespace peft
