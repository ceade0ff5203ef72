#pragma once
// Low-displacement-rank products, S = Σ_{i<ρ} Circ(g_i)·Skew(h_i) (n x n),
// with the spectra shared across the ρ terms. F is the real FFT, N the
// negacyclic transform (fft/negacyclic.hpp; Skew(h)·x = N⁻¹(ĥ ⊙ N(x))):
//   forward   x̃ = N(x) once;  per term u_i = N⁻¹(h̃_i ⊙ x̃),  û_i = F(u_i);
//             y = F⁻¹(Σ_i ĝ_i ⊙ û_i)  (one inverse for all terms)
//   backward  Ĝ = F(g) once;  dg_i = F⁻¹(Σ_rows conj(û_i) ⊙ Ĝ);
//             du_i = F⁻¹(conj(ĝ_i) ⊙ Ĝ),  D̃_i = N(du_i);
//             dh_i = N⁻¹(Σ_rows conj(x̃) ⊙ D̃_i);  dx = N⁻¹(Σ_i conj(h̃_i) ⊙ D̃_i)
// 2 + 2ρ transforms each way instead of 4ρ, each of length n. On our engine
// with even n, each panel of rows runs the whole chain in lanes (panels.hpp):
// one load and one store per panel and direction, spectra kept in lane layout.
// The kernel is one array [g_0 .. g_{ρ−1}, h_0 .. h_{ρ−1}] (2ρn entries), as
// SURM's ldr_g and ldr_h sit in its parameter block.

#include <span>
#include <type_traits>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/fft/negacyclic.hpp>
#include <peft/structured/circulant.hpp>
#include <peft/structured/correlation.hpp>
#include <peft/structured/panels.hpp>
#include <peft/structured/spectral.hpp>
#include <peft/structured/skew_circulant.hpp>

namespace peft::structured {

/// The dense Σ Circ(g_i)·Skew(h_i) for kernel [g; h] (2ρn entries), the oracle for tests.
template <class T>
Matrix<T> ldr_dense(const Eigen::Ref<const Vector<T>>& kernel, Index n, Index rank) {
  PEFT_REQUIRE(kernel.size() == 2 * rank * n, "ldr_dense: kernel must have 2·rank·n = ", 2 * rank * n,
               " entries, got ", kernel.size());
  Matrix<T> S = Matrix<T>::Zero(n, n);
  for (Index i = 0; i < rank; ++i)
    S += circulant_dense<T>(kernel.segment(i * n, n)) * skew_circulant_dense<T>(kernel.segment((rank + i) * n, n));
  return S;
}

/// Low-displacement-rank products S = Σ_{i<ρ} Circ(g_i)·Skew(h_i) (n x n) times
/// every row, with the transpose and kernel gradient; kernel [g_0 .. g_{ρ−1}, h_0 .. h_{ρ−1}].
template <class T, class Plan = fft::RealFFT<T>>
class LDR {
  using Spectra = fft::ComplexMatrix<T>;

 public:
  /// Size n and displacement rank ρ = `rank`; throws peft::Error unless n >= 1 and ρ in [1, n].
  LDR(Index n, Index rank) : n_(checked(n, rank)), rank_(rank), plan_n_(n), skew_plan_(n) {
    g_hat_.resize(rank, plan_n_.bins());
    h_hat_.resize(rank, skew_plan_.bins());
    u_hat_.resize(static_cast<std::size_t>(rank));
  }

  Index size() const { return n_; }                    ///< n
  Index rank() const { return rank_; }                 ///< ρ
  Index num_params() const { return 2 * rank_ * n_; }  ///< 2ρn, the kernel's length

  /// Sets [g; h] and computes their spectra once.
  void set_kernel(const T* kernel) {
    plan_n_.forward(kernel, n_, g_hat_.data(), g_hat_.cols(), rank_);
    skew_plan_.forward(kernel + rank_ * n_, n_, h_hat_.data(), h_hat_.cols(), rank_);
  }

  /// Y = scale · rows S·x of X (N x n), or Y (N x n) += that with `accumulate`.
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<true>(X, Y, scale, accumulate);
  }

  /// forward keeping nothing for backward: the inference path, on a product
  /// the calling thread owns. Backward needs a new forward.
  void apply(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<false>(X, Y, scale, accumulate);
  }

  /// dX = scale · rows Sᵀ·g of G (or += with `accumulate`); dkernel (2ρn
  /// entries, may be null) += scale · [dg; dh], with x from the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dkernel, T scale = T(1), bool accumulate = false) {
    PEFT_REQUIRE(G.cols() == n_ && G.rows() == forward_rows_, "LDR::backward: G must be ",
                 ::peft::detail::shape_str(forward_rows_, n_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    if (on_panels()) {
      if constexpr (kPanels) {
        detail::prepare_output(dX, G.rows(), n_, accumulate, "LDR::backward");
        backward_panels(G, dX, dkernel, scale, accumulate);
      }
      return;
    }
    fft::forward(plan_n_, G, g_in_hat_);
    dx_sum_.setZero(G.rows(), skew_plan_.bins());
    for (Index i = 0; i < rank_; ++i) {
      if (dkernel != nullptr)
        detail::add_correlation(plan_n_, u_hat_[static_cast<std::size_t>(i)], g_in_hat_, dkernel + i * n_, n_,
                                correlation_, scale);
      detail::inverse_of_product<true>(plan_n_, g_in_hat_, &g_hat_(i, 0), work_n_, u_, inverse_scale(), false,
                                       "LDR::backward");
      fft::forward(skew_plan_, u_, d_hat_);
      if (dkernel != nullptr)
        detail::add_correlation(skew_plan_, x_hat_, d_hat_, dkernel + (rank_ + i) * n_, n_, correlation_,
                                scale);
      detail::multiply_rows<true, true>(d_hat_, &h_hat_(i, 0), dx_sum_);
    }
    detail::inverse_rows(skew_plan_, dx_sum_, dX, scale * inverse_scale(), accumulate, "LDR::backward");
  }

 private:
  using SkewPlan = fft::NegacyclicFFT<T, Plan>;
  using Lane = fft::detail::LaneComplex<T>;
  using Sum = fft::detail::SumComplex<T>;
  // The panel path runs both transforms on plan_n_ (one scratch in cache, not two).
  static constexpr bool kPanels = std::is_same_v<Plan, fft::VectorizedFFT<T>>;
  static constexpr auto kSkew = fft::Transform::negacyclic;

  bool on_panels() const { return kPanels && n_ % 2 == 0; }

  // forward; with Keep, x̃ and the û_i stay for backward; without, one
  // buffer serves every term's û_i and backward takes no batch.
  template <bool Keep>
  void run_forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale, bool accumulate) {
    PEFT_REQUIRE(X.cols() == n_, "LDR::forward: X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    forward_rows_ = Keep ? X.rows() : 0;
    if (on_panels()) {
      if constexpr (kPanels) {
        detail::prepare_output(Y, X.rows(), n_, accumulate, "LDR::forward");
        forward_panels<Keep>(X, Y, scale * inverse_scale(), accumulate);
      }
      return;
    }
    fft::forward(skew_plan_, X, x_hat_);
    sum_.setZero(X.rows(), plan_n_.bins());
    for (Index i = 0; i < rank_; ++i) {
      detail::inverse_of_product<false>(skew_plan_, x_hat_, &h_hat_(i, 0), work_skew_, u_, inverse_scale(), false,
                                        "LDR::forward");
      Spectra& u_hat = u_hat_[static_cast<std::size_t>(Keep ? i : 0)];
      fft::forward(plan_n_, u_, u_hat);
      detail::multiply_rows<false, true>(u_hat, &g_hat_(i, 0), sum_);
    }
    detail::inverse_rows(plan_n_, sum_, Y, scale * inverse_scale(), accumulate, "LDR::forward");
  }

  // Per panel: x̃ = N(x) (kept if Keep); per term u_i = N⁻¹(h̃_i ⊙ x̃) moved to
  // the real layout, û_i = F(u_i) (kept if Keep, else in a panel buffer);
  // Y = or += out_scale · F⁻¹(Σ ĝ_i ⊙ û_i).
  template <bool Keep>
  void forward_panels(const ConstMatrixRef<T>& X, Matrix<T>& Y, T out_scale, bool accumulate)
    requires kPanels
  {
    const Index skew_bins = skew_plan_.bins();
    if constexpr (Keep) {
      x_panels_.resize(X.rows(), skew_bins);
      u_panels_.resize(static_cast<std::size_t>(rank_));
      for (auto& u : u_panels_) u.resize(X.rows(), plan_n_.panel_slots());  // holds u_i as a signal first
    }
    workers_.prepare(plan_n_, X.rows(), Keep ? 3 : 4);
    workers_.run(X.rows(), [&](auto& w, Index r0, int lanes, Index p) {
      Plan& plan = *w.plan;
      Lane *x = w.buffer(0), *work = w.buffer(1), *sum = w.buffer(2);
      plan.template load_panel<kSkew>(X.data() + r0 * X.outerStride(), X.outerStride(), lanes, x);
      if constexpr (Keep) {
        Lane* x_kept = x_panels_.panel(p);
        plan.template forward_panel<kSkew>(x, [&](Index k, const Lane& v) { x_kept[k] = v; });
      } else {
        plan.template forward_panel<kSkew>(x);
      }
      for (Index i = 0; i < rank_; ++i) {
        fft::detail::product_lanes(x, &h_hat_(i, 0), false, work, skew_bins);
        Lane* u_hat = Keep ? u_panels_[static_cast<std::size_t>(i)].panel(p) : w.buffer(3);
        plan.negacyclic_inverse_to_real_layout(work, u_hat, inverse_scale(), false);
        const std::complex<T>* g_hat = &g_hat_(i, 0);
        // sum = Σ_i ĝ_i ⊙ û_i, taken in û_i's post-twiddle pass.
        plan.forward_panel(u_hat, [&](Index k, const Lane& u) {
          if (i == 0) sum[k] = Lane{};
          fft::detail::add_product_lane(sum[k], u, g_hat[k]);
        });
      }
      plan.inverse_panel(sum);
      plan.store_panel(sum, Y.data() + r0 * n_, n_, lanes, out_scale, accumulate);
    });
  }

  // Per panel: Ĝ = F(g); per term du_i = F⁻¹(conj(ĝ_i) ⊙ Ĝ) moved to the
  // negacyclic layout, D̃_i = N(du_i); dX = or += N⁻¹(Σ conj(h̃_i) ⊙ D̃_i).
  // The kernel gradients' batch sums (conj(û_i)⊙Ĝ, conj(x̃)⊙D̃_i) are kept
  // per lane and reduced, then inverted once, after the last panel.
  void backward_panels(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dkernel, T scale, bool accumulate)
    requires kPanels
  {
    const Index real_bins = plan_n_.bins(), skew_bins = skew_plan_.bins();
    // The kernel gradients' sums: [dg_0..dg_{ρ−1}, dh_0..dh_{ρ−1}].
    sum_bins_.assign(static_cast<std::size_t>(rank_), real_bins);
    sum_bins_.resize(2 * static_cast<std::size_t>(rank_), skew_bins);
    workers_.prepare(plan_n_, G.rows(), 4,
                     dkernel != nullptr ? std::span<const Index>(sum_bins_) : std::span<const Index>());
    workers_.run(G.rows(), [&](auto& w, Index r0, int lanes, Index p) {
      Plan& plan = *w.plan;
      Lane *g = w.buffer(0), *work = w.buffer(1), *dx_sum = w.buffer(2), *d_hat = w.buffer(3);
      plan.load_panel(G.data() + r0 * G.outerStride(), G.outerStride(), lanes, g);
      plan.forward_panel(g);
      const Lane* x_kept = x_panels_.panel(p);
      for (Index i = 0; i < rank_; ++i) {
        const Lane* u_hat = u_panels_[static_cast<std::size_t>(i)].panel(p);
        Sum* g_sums = dkernel != nullptr ? w.sums[static_cast<std::size_t>(i)].data() : nullptr;
        Sum* h_sums = dkernel != nullptr ? w.sums[static_cast<std::size_t>(rank_ + i)].data() : nullptr;
        const std::complex<T>*g_hat = &g_hat_(i, 0), *h_hat = &h_hat_(i, 0);
        // work = conj(ĝ_i) ⊙ Ĝ and dg_i's sum, taken in the pre-twiddle pass.
        plan.inverse_panel(work, [&](Index k, Lane& v) {
          if (g_sums != nullptr) fft::detail::add_conj_product_folded(g_sums[k], u_hat[k], g[k]);
          v = g[k];
          fft::detail::multiply_lane(v, std::conj(g_hat[k]));
        });
        plan.real_layout_to_negacyclic_forward(work, d_hat, inverse_scale());
        for (Index k = 0; k < skew_bins; ++k) {
          if (h_sums != nullptr) fft::detail::add_conj_product_folded(h_sums[k], x_kept[k], d_hat[k]);
          if (i == 0) dx_sum[k] = Lane{};
          fft::detail::add_product_lane(dx_sum[k], d_hat[k], std::conj(h_hat[k]));
        }
      }
      plan.template inverse_panel<kSkew>(dx_sum);
      plan.template store_panel<kSkew>(dx_sum, dX.data() + r0 * n_, n_, lanes, scale * inverse_scale(), accumulate);
    });
    if (dkernel == nullptr) return;
    for (Index i = 0; i < 2 * rank_; ++i) {
      const bool real = i < rank_;
      workers_.reduce_sums(static_cast<std::size_t>(i), correlation_.sum_for(real ? real_bins : skew_bins));
      if (real)
        detail::add_inverse_of_sum(plan_n_, dkernel + i * n_, n_, correlation_, scale);
      else
        detail::add_inverse_of_sum(skew_plan_, dkernel + i * n_, n_, correlation_, scale);
    }
  }

 private:
  static Index checked(Index n, Index rank) {
    PEFT_REQUIRE(n >= 1, "LDR: size must be >= 1, got ", n);
    PEFT_REQUIRE(rank >= 1 && rank <= n, "LDR: displacement rank must be in [1, n] = [1, ", n, "], got ", rank);
    return n;
  }

  T inverse_scale() const { return T(1) / static_cast<T>(n_); }

  Index n_, rank_;
  Plan plan_n_;
  SkewPlan skew_plan_;
  Spectra g_hat_, h_hat_;            // kernel spectra, one row per term (real FFT, negacyclic)
  Spectra x_hat_;                    // forward input's negacyclic spectrum, kept for dh
  std::vector<Spectra> u_hat_;       // per term, Skew(h_i)·x's spectrum, kept for dg
  Spectra sum_, g_in_hat_, d_hat_, dx_sum_, work_n_, work_skew_;
  detail::CorrelationScratch<T> correlation_;
  Matrix<T> u_;
  Index forward_rows_ = 0;
  // Panel path: x̃ and the û_i in lane layout; per thread a plan, panel
  // buffers and the kernel gradients' per-lane sums.
  detail::PanelSpectra<T> x_panels_;
  std::vector<detail::PanelSpectra<T>> u_panels_;
  detail::PanelWorkers<Plan> workers_;
  std::vector<Index> sum_bins_;
};

}  // namespace peft::structured
