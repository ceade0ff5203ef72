#pragma once
// SURM, structured unrestricted-rank matrices (Sehanobish et al., NeurIPS 2024,
// arXiv 2406.17740) in place of LoRA's low-rank update:
//   Y = X·W0ᵀ + b + X·ΔWᵀ,  ΔW = α·P_out·S·P_inᵀ,  n = max(d_in, d_out)
// where P_in zero-pads the input to n and P_out keeps the first d_out outputs,
// and S (n x n) is one of
//   Circulant        Circ(circulant_A ⊙ circulant_B)      A ~ N(0, 1), B = 0
//   CirculantSingle  Circ(circulant_A)                    A = 0
//   SymToeplitz      T(toeplitz_b)·T(toeplitz_a), T(v)[i][j] = v[|i − j|]
//                                                         a ~ N(0, 0.02²), b = 0
//   LDR              Σ_{i<ρ} Circ(ldr_g[i])·Skew(ldr_h[i]) g = 0, h ~ N(0, 0.02²)
// and two are natively rectangular:
//   Toeplitz   ΔW[i][j] = α·toeplitz[i − j + d_in − 1]  (d_in + d_out − 1 parameters, zero at start)
//   Kronecker  ΔW = (α/r)·(kronecker_B ⊗ kronecker_A), A: r x d_in/r ~ kaiming-uniform, B: d_out/r x r = 0
//              (r = rank must divide d_in and d_out; applied through reshapes). Every variant starts at ΔW = 0
// with non-zero gradients. Products run through real FFTs (O(n log n) per
// row); ΔW is only formed by delta_weight() (merge and tests).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include <peft/core/adapter.hpp>
#include <peft/core/error.hpp>
#include <peft/core/init.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/random.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>
#include <peft/structured/circulant.hpp>
#include <peft/structured/kronecker.hpp>
#include <peft/structured/ldr.hpp>
#include <peft/structured/toeplitz.hpp>

namespace peft {

/// The structure of a SURM's S (n x n, n = max(d_in, d_out)), or of its ΔW: Circulant
/// Circ(A ⊙ B), CirculantSingle Circ(A), SymToeplitz T(b)·T(a), LDR Σ Circ(g_i)·Skew(h_i),
/// and the rectangular Toeplitz (d_in + d_out − 1 parameters) and Kronecker B ⊗ A.
enum class Structure { Circulant, CirculantSingle, SymToeplitz, Toeplitz, Kronecker, LDR };

/// SURM's hyperparameters.
struct SURMConfig {
  Structure structure = Structure::Circulant;  ///< which structured matrix
  Index rank = 1;       ///< LDR displacement rank ρ, or the Kronecker r
  double alpha = 1.0;   ///< scaling of ΔW
  std::uint64_t seed = 0;  ///< seeds the init
};

/// SURM: a structured, unrestricted-rank ΔW = α·P_out·S·P_inᵀ in place of LoRA's
/// low-rank one (P_in zero-pads X to n, P_out keeps the first d_out outputs); zero at start.
template <class T>
class SURM : public OwnsParameters<T> {
  using OwnsParameters<T>::params_;

 public:
  using Scalar = T;  ///< element type

  /// Throws peft::Error for non-positive sizes, a non-finite or non-positive alpha,
  /// a Kronecker r that does not divide d_in and d_out or makes ΔW rank 1, or an LDR rank outside [1, n].
  SURM(Index d_in, Index d_out, const SURMConfig& config = {})
      : d_in_(d_in), d_out_(d_out), n_(std::max(d_in, d_out)), config_(config), alpha_(static_cast<T>(config.alpha)) {
    PEFT_REQUIRE(d_in > 0 && d_out > 0, "SURM: d_in and d_out must be positive, got d_in = ", d_in, ", d_out = ", d_out);
    PEFT_REQUIRE(config.alpha > 0 && std::isfinite(config.alpha), "SURM: alpha must be a finite value > 0, got ",
                 config.alpha);
    Rng rng(config.seed);
    switch (config.structure) {
      case Structure::Circulant:
        params_.add("circulant_A", {n_});
        params_.add("circulant_B", {n_});
        init::normal(params_.value(0), 1.0, rng);
        circulants_.emplace_back(std::make_unique<structured::Circulant<T>>(n_));
        break;
      case Structure::CirculantSingle:
        params_.add("circulant_A", {n_});
        circulants_.emplace_back(std::make_unique<structured::Circulant<T>>(n_));
        break;
      case Structure::SymToeplitz:
        params_.add("toeplitz_a", {n_});
        params_.add("toeplitz_b", {n_});
        init::normal(params_.value(0), 0.02, rng);
        toeplitz_a_ = std::make_unique<structured::Toeplitz<T>>(n_, n_);
        toeplitz_b_ = std::make_unique<structured::Toeplitz<T>>(n_, n_);
        break;
      case Structure::Toeplitz:
        params_.add("toeplitz", {d_in + d_out - 1});
        toeplitz_a_ = std::make_unique<structured::Toeplitz<T>>(d_out, d_in);
        break;
      case Structure::Kronecker:
        PEFT_REQUIRE(config.rank >= 1 && d_in % config.rank == 0 && d_out % config.rank == 0,
                     "SURM: Kronecker r must divide d_in = ", d_in, " and d_out = ", d_out, ", got ", config.rank);
        // rank(B ⊗ A) <= min(d_out/r, r)·min(r, d_in/r): with r = 1 (the only
        // choice at a prime size) ΔW would silently be one outer product, a LoRA r=1.
        PEFT_REQUIRE(std::min(d_out / config.rank, config.rank) * std::min(config.rank, d_in / config.rank) > 1,
                     "SURM: Kronecker r = ", config.rank, " over ", d_in, " -> ", d_out,
                     " makes ΔW = B ⊗ A a rank-1 outer product; expected a common divisor r of d_in and d_out with "
                     "1 < r and not r = d_in = d_out (a prime size has none: pick another structure)");
        params_.add("kronecker_A", {config.rank, d_in / config.rank});
        params_.add("kronecker_B", {d_out / config.rank, config.rank});
        init::kaiming_uniform(params_.value(0), d_in / config.rank, std::sqrt(5.0), rng);
        kronecker_ = structured::Kronecker<T>(d_out / config.rank, config.rank, config.rank, d_in / config.rank);
        break;
      case Structure::LDR:
        PEFT_REQUIRE(config.rank >= 1 && config.rank <= n_, "SURM: LDR displacement rank must be in [1, n] = [1, ", n_,
                     "], got ", config.rank);
        params_.add("ldr_g", {config.rank, n_});
        params_.add("ldr_h", {config.rank, n_});  // directly after ldr_g: LDR's kernel is [g; h]
        init::normal(params_.value(1), 0.02, rng);
        ldr_ = std::make_unique<structured::LDR<T>>(n_, config.rank);
        break;
    }
  }

  Index in_features() const { return d_in_; }           ///< d_in
  Index out_features() const { return d_out_; }         ///< d_out
  const SURMConfig& config() const { return config_; }  ///< the configuration it was built with

  /// Real-FFT flops (≈ 2.5·L·log2 L per transform of length L) plus the
  /// pointwise products, forward + backward, for N rows.
  double flops(Index N) const {
    auto fft = [](double L) { return 2.5 * L * std::log2(std::max(L, 2.0)); };
    const double rows = static_cast<double>(N), n = static_cast<double>(n_);
    switch (config_.structure) {
      case Structure::Circulant:
      case Structure::CirculantSingle: return rows * (5 * fft(n) + 12 * n);
      case Structure::SymToeplitz: return 2 * rows * (5 * fft(2 * n) + 24 * n);
      case Structure::Toeplitz: return rows * (5 * fft(static_cast<double>(d_in_ + d_out_)) + 12 * (d_in_ + d_out_));
      case Structure::Kronecker:  // three GEMMs on each factor side: forward, dX, and the factor's gradient
        return 6.0 * rows * static_cast<double>(config_.rank) * static_cast<double>(d_in_ + d_out_);
      case Structure::LDR: {  // 2 + 2ρ length-n transforms each way (negacyclic ones cost a real FFT's)
        const double rank = static_cast<double>(config_.rank);
        return rows * ((4 + 4 * rank) * fft(n) + 36 * rank * n);
      }
    }
    return 0;
  }

  /// ΔW = α·P_out·S·P_inᵀ (d_out x d_in), formed densely: for merging and tests.
  Matrix<T> delta_weight() const {
    if (config_.structure == Structure::Toeplitz)
      return alpha_ * structured::toeplitz_dense<T>(params_.value(0).row(0).transpose(), d_out_, d_in_);
    if (config_.structure == Structure::Kronecker)
      return kronecker_scale() * structured::kronecker_dense<T>(params_.value(1), params_.value(0));
    Matrix<T> S;
    switch (config_.structure) {
      case Structure::Circulant: S = structured::circulant_dense<T>(circulant_kernel()); break;
      case Structure::CirculantSingle: S = structured::circulant_dense<T>(params_.value(0).row(0).transpose()); break;
      case Structure::SymToeplitz: {
        Vector<T> a(2 * n_ - 1), b(2 * n_ - 1);
        symmetric_kernel(0, a.data());
        symmetric_kernel(1, b.data());
        S = structured::toeplitz_dense<T>(b, n_, n_) * structured::toeplitz_dense<T>(a, n_, n_);
        break;
      }
      default:
        S = structured::ldr_dense<T>(Eigen::Map<const Vector<T>>(params_.value(0).data(), 2 * config_.rank * n_), n_,
                                     config_.rank);
    }
    return alpha_ * S.topLeftCorner(d_out_, d_in_);
  }

  /// Y += α·(P_out·S·P_inᵀ applied to each row of X).
  void forward_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) {
    detail::check_delta_shapes<T>("SURM::forward_delta", X, Y, d_in_, d_out_);
    rows_ = X.rows();
    if (circulant() && d_in_ == d_out_) {  // square: no padding, the product lands in Y directly
      set_circulant_kernel();
      circulants_[0]->forward(X, Y, alpha_, true);
      return;
    }
    if (config_.structure == Structure::LDR && d_in_ == d_out_) {
      ldr_->set_kernel(params_.value(0).data());
      ldr_->forward(X, Y, alpha_, true);
      return;
    }
    if (config_.structure == Structure::SymToeplitz && d_in_ == d_out_) {
      symmetric_toeplitz_forward(X, Y, alpha_, true);
      return;
    }
    if (config_.structure == Structure::Toeplitz || config_.structure == Structure::Kronecker) {
      if (config_.structure == Structure::Toeplitz) {
        toeplitz_a_->set_kernel(params_.value(0).data());
        toeplitz_a_->forward(X, Y, alpha_, true);
      } else {
        kronecker_.forward(params_.value(1), params_.value(0), kronecker_scale(), X, z_);
        Y += z_;
      }
      return;
    }
    xp_.setZero(X.rows(), n_);
    xp_.leftCols(d_in_) = X;
    switch (config_.structure) {
      case Structure::Circulant:
      case Structure::CirculantSingle:
        set_circulant_kernel();
        circulants_[0]->forward(xp_, z_);
        break;
      case Structure::SymToeplitz:
        symmetric_toeplitz_forward(xp_, z_, T(1), false);
        break;
      default:
        ldr_->set_kernel(params_.value(0).data());
        ldr_->forward(xp_, z_);
    }
    Y += alpha_ * z_.leftCols(d_out_);
  }

  /// Y += what forward_delta adds, keeping nothing (const: several threads may
  /// call it at once). The kernel spectra are taken from the current parameters
  /// on every call, on products the calling thread owns (thread_product).
  void infer_delta(const ConstMatrixRef<T>& X, Matrix<T>& Y) const {
    detail::check_delta_shapes<T>("SURM::infer_delta", X, Y, d_in_, d_out_);
    if (config_.structure == Structure::Kronecker) {
      kronecker_.apply(params_.value(1), params_.value(0), kronecker_scale(), X, Y);
      return;
    }
    if (config_.structure == Structure::Toeplitz) {
      auto& toeplitz = thread_product<structured::Toeplitz<T>>(d_out_, d_in_);
      toeplitz.set_kernel(params_.value(0).data());
      toeplitz.apply(X, Y, alpha_, true);
      return;
    }
    if (d_in_ == d_out_) {  // square: no padding, the product lands in Y directly
      infer_square(X, Y, alpha_, true);
      return;
    }
    Matrix<T>& xp = thread_matrix<SURM, T, kPaddedSlot>(X.rows(), n_);
    xp.setZero();
    xp.leftCols(d_in_) = X;
    Matrix<T>& z = thread_matrix<SURM, T, kProductSlot>(X.rows(), n_);
    infer_square(xp, z, T(1), false);
    Y += alpha_ * z.leftCols(d_out_);
  }

  /// dX += α·(P_out·S·P_inᵀ)ᵀ applied to dY's rows; parameter gradients accumulate.
  void backward_delta(const ConstMatrixRef<T>& dY, Matrix<T>& dX) {
    PEFT_REQUIRE(dY.rows() == rows_ && dY.cols() == d_out_, "SURM::backward_delta: dY must be ",
                 ::peft::detail::shape_str(rows_, d_out_), " (N x d_out of the last forward), got ",
                 ::peft::detail::shape_str(dY.rows(), dY.cols()));
    if (circulant() && d_in_ == d_out_) {
      add_circulant_backward(dY, dX, true);
      return;
    }
    if (config_.structure == Structure::Toeplitz) {
      toeplitz_a_->backward(dY, dX, params_.grad(0).data(), alpha_, true);
      return;
    }
    if (config_.structure == Structure::LDR && d_in_ == d_out_) {
      ldr_->backward(dY, dX, params_.grad(0).data(), alpha_, true);
      return;
    }
    if (config_.structure == Structure::SymToeplitz && d_in_ == d_out_) {
      symmetric_toeplitz_backward(dY, dX, alpha_, true);
      return;
    }
    if (config_.structure == Structure::Kronecker) {
      kronecker_.backward(dY, dX, dB_, dA_);
      params_.grad(0) += dA_;
      params_.grad(1) += dB_;
      return;
    }
    gp_.setZero(dY.rows(), n_);
    gp_.leftCols(d_out_) = alpha_ * dY;
    switch (config_.structure) {
      case Structure::Circulant:
      case Structure::CirculantSingle:
        add_circulant_backward(gp_, dxp_, false);
        break;
      case Structure::SymToeplitz:
        symmetric_toeplitz_backward(gp_, dxp_, T(1), false);
        break;
      default:
        ldr_->backward(gp_, dxp_, params_.grad(0).data());
    }
    dX += dxp_.leftCols(d_in_);
  }

 private:
  // infer_delta's per-thread working memory: thread_matrix slots, and the
  // kernel's thread_scratch (its length differs between structures and sizes).
  static constexpr int kPaddedSlot = 0, kProductSlot = 1, kHiddenSlot = 2, kKernelSlot = 0;

  /// The calling thread's product of these sizes, made on first use and kept:
  /// products hold plan scratch and spectra, so a const path cannot use the members'.
  template <class Product, class... Sizes>
  static Product& thread_product(Sizes... sizes) {
    thread_local std::map<std::tuple<Sizes...>, Product> products;
    return products.try_emplace(std::tuple<Sizes...>(sizes...), sizes...).first->second;
  }

  /// Y = or += scale · rows S·x of X (N x n) for the n x n structures
  /// (circulant, symmetric Toeplitz, LDR), as forward_delta computes them.
  void infer_square(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale, bool accumulate) const {
    switch (config_.structure) {
      case Structure::Circulant:
      case Structure::CirculantSingle: {
        auto& circulant = thread_product<structured::Circulant<T>>(n_);
        if (config_.structure == Structure::CirculantSingle) {
          circulant.set_kernel(params_.value(0).data());
        } else {
          auto kernel = thread_scratch<SURM, T, kKernelSlot>().view(1, n_);
          kernel = params_.value(0).cwiseProduct(params_.value(1));  // A ⊙ B
          circulant.set_kernel(kernel.data());
        }
        circulant.apply(X, Y, scale, accumulate);
        return;
      }
      case Structure::SymToeplitz: {  // T(b)·(T(a)·x), one product taking each kernel in turn
        auto& toeplitz = thread_product<structured::Toeplitz<T>>(n_, n_);
        auto kernel = thread_scratch<SURM, T, kKernelSlot>().view(1, 2 * n_ - 1);
        Matrix<T>& u = thread_matrix<SURM, T, kHiddenSlot>(X.rows(), n_);
        symmetric_kernel(0, kernel.data());
        toeplitz.set_kernel(kernel.data());
        toeplitz.apply(X, u);
        symmetric_kernel(1, kernel.data());
        toeplitz.set_kernel(kernel.data());
        toeplitz.apply(u, Y, scale, accumulate);
        return;
      }
      default: {
        auto& ldr = thread_product<structured::LDR<T>>(n_, config_.rank);
        ldr.set_kernel(params_.value(0).data());
        ldr.apply(X, Y, scale, accumulate);
      }
    }
  }

  T kronecker_scale() const { return alpha_ / static_cast<T>(config_.rank); }

  bool circulant() const {
    return config_.structure == Structure::Circulant || config_.structure == Structure::CirculantSingle;
  }

  /// Circ(A ⊙ B) for Circulant, Circ(A) for CirculantSingle.
  void set_circulant_kernel() {
    if (config_.structure == Structure::CirculantSingle) {
      circulants_[0]->set_kernel(params_.value(0).data());
      return;
    }
    kernel_ = circulant_kernel();
    circulants_[0]->set_kernel(kernel_.data());
  }

  /// A ⊙ B as an expression: assigned to kernel_ (already sized) it allocates nothing.
  auto circulant_kernel() const {
    return (params_.value(0).row(0).array() * params_.value(1).row(0).array()).matrix().transpose();
  }

  /// Y = or += scale · rows of T(b)·T(a)·x (the square case writes the
  /// adapter's output directly, the padded one a scratch).
  void symmetric_toeplitz_forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale, bool accumulate) {
    kernel_.resize(2 * n_ - 1);
    symmetric_kernel(0, kernel_.data());  // set_kernel takes its spectrum, so kernel_ serves both
    toeplitz_a_->set_kernel(kernel_.data());
    toeplitz_a_->forward(X, u_);
    symmetric_kernel(1, kernel_.data());
    toeplitz_b_->set_kernel(kernel_.data());
    toeplitz_b_->forward(u_, Y, scale, accumulate);
  }

  /// dX = or += scale · rows of T(a)ᵀ·T(b)ᵀ·g; a's and b's gradients accumulate.
  void symmetric_toeplitz_backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T scale, bool accumulate) {
    kernel_grad_.setZero(2 * n_ - 1);
    toeplitz_b_->backward(G, du_, kernel_grad_.data(), scale);  // du = scale · T(b)ᵀ·g
    add_symmetric_grad(kernel_grad_, 1);
    kernel_grad_.setZero();
    toeplitz_a_->backward(du_, dX, kernel_grad_.data(), T(1), accumulate);
    add_symmetric_grad(kernel_grad_, 0);
  }

  /// The circulant product's backward. Square (`scaled_in_place`): G = dY,
  /// scaled by α here and added straight into dX. Padded: G = α·P_out·dY
  /// already, dX is the padded scratch.
  void add_circulant_backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, bool scaled_in_place) {
    const T scale = scaled_in_place ? alpha_ : T(1);
    kernel_grad_.setZero(n_);
    circulants_[0]->backward(G, dX, kernel_grad_.data(), scale, scaled_in_place);
    if (config_.structure == Structure::CirculantSingle) {
      params_.grad(0).row(0) += kernel_grad_.transpose();
      return;
    }
    params_.grad(0).row(0).array() += kernel_grad_.transpose().array() * params_.value(1).row(0).array();
    params_.grad(1).row(0).array() += kernel_grad_.transpose().array() * params_.value(0).row(0).array();
  }

  /// t (2n − 1 entries) = [v_{n−1}..v_1, v_0, v_1..v_{n−1}]: T(v) as a general Toeplitz kernel.
  void symmetric_kernel(Index which, T* t) const {
    const auto v = params_.value(which).row(0);
    for (Index k = 0; k < n_; ++k) t[n_ - 1 + k] = t[n_ - 1 - k] = v[k];
  }

  /// dv_0 = dt_{n−1}, dv_k = dt_{n−1+k} + dt_{n−1−k}.
  void add_symmetric_grad(const Vector<T>& dt, Index which) {
    auto dv = params_.grad(which).row(0);
    dv[0] += dt[n_ - 1];
    for (Index k = 1; k < n_; ++k) dv[k] += dt[n_ - 1 + k] + dt[n_ - 1 - k];
  }

  Index d_in_, d_out_, n_;
  SURMConfig config_;
  T alpha_;
  Index rows_ = -1;
  std::vector<std::unique_ptr<structured::Circulant<T>>> circulants_;
  std::unique_ptr<structured::LDR<T>> ldr_;
  std::unique_ptr<structured::Toeplitz<T>> toeplitz_a_, toeplitz_b_;
  structured::Kronecker<T> kronecker_;
  Matrix<T> xp_, gp_, u_, z_, du_, dxp_, dA_, dB_;
  Vector<T> kernel_, kernel_grad_;  // circulant / symmetric Toeplitz kernels and their gradients, reused per call
};

}  // namespace peft
