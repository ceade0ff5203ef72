#pragma once
// S = Circ(c) + Skew(s) (n x n), the form a square Toeplitz matrix of even n
// is computed in (toeplitz.hpp). Each part is diagonalised by its own
// transform (F the real FFT, N the negacyclic one), so
//   forward   y = F⁻¹(ĉ ⊙ F(x)) + N⁻¹(ŝ ⊙ N(x))
//   input     dx = F⁻¹(conj(ĉ) ⊙ F(g)) + N⁻¹(conj(ŝ) ⊙ N(g))
//   kernel    dc = F⁻¹(Σ_rows conj(x̂) ⊙ ĝ),  ds = N⁻¹(Σ_rows conj(x̃) ⊙ g̃)
// On our engine (panels.hpp) a panel of rows is loaded once, re-laid in lanes
// for the second transform, and the two results are summed in lanes before
// one store: one load and one store per panel instead of two each. Other
// plans run a Circulant and a SkewCirculant one after the other.
// The kernel is one array [c; s] (2n entries).

#include <algorithm>
#include <optional>
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
#include <peft/structured/skew_circulant.hpp>

namespace peft::structured {

/// The dense Circ(c) + Skew(s) for kernel [c; s] (2n entries), the oracle for tests.
template <class T>
Matrix<T> circulant_plus_skew_dense(const Eigen::Ref<const Vector<T>>& kernel) {
  const Index n = kernel.size() / 2;
  return circulant_dense<T>(kernel.head(n)) + skew_circulant_dense<T>(kernel.tail(n));
}

/// S = Circ(c) + Skew(s) (n x n, kernel [c; s] of 2n entries) times every row,
/// with its transpose and kernel gradient: a square Toeplitz matrix's form.
template <class T, class Plan = fft::RealFFT<T>>
class CirculantPlusSkew {
  using SkewPlan = fft::NegacyclicFFT<T, Plan>;
  using Lane = fft::detail::LaneComplex<T>;
  using Sum = fft::detail::SumComplex<T>;
  // The panel path runs both transforms on one engine plan (one scratch in
  // cache, not two).
  static constexpr bool kPanels = std::is_same_v<Plan, fft::VectorizedFFT<T>>;

 public:
  /// A product of size n x n; throws peft::Error unless n >= 1.
  explicit CirculantPlusSkew(Index n) : n_(checked(n)) {
    if (kPanels && n % 2 == 0) {
      panels_.emplace(n);
      return;
    }
    circulant_.emplace(n);
    skew_.emplace(n);
  }

  Index size() const { return n_; }  ///< n

  /// Sets [c; s] (2n entries) and computes their spectra once.
  void set_kernel(const T* kernel) {
    if (!panels_) {
      circulant_->set_kernel(kernel);
      skew_->set_kernel(kernel + n_);
      return;
    }
    if constexpr (kPanels) {
      panels_->real.forward(kernel, n_, panels_->c_hat.data(), panels_->real.bins(), 1);
      panels_->skew.forward(kernel + n_, n_, panels_->s_hat.data(), panels_->skew.bins(), 1);
    }
  }

  /// Y = scale · rows S·x of X (N x n), or Y (N x n) += that with `accumulate`.
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<true>(X, Y, scale, accumulate, "CirculantPlusSkew::forward");
  }

  /// forward keeping nothing for backward: the inference path, on a product
  /// the calling thread owns. Backward needs a new forward.
  void apply(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<false>(X, Y, scale, accumulate, "CirculantPlusSkew::apply");
  }

  /// dX = scale · rows Sᵀ·g of G (or += with `accumulate`); dkernel (2n
  /// entries, may be null) += scale · [dc; ds], with x from the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dkernel, T scale = T(1), bool accumulate = false) {
    PEFT_REQUIRE(G.cols() == n_ && G.rows() == forward_rows_, "CirculantPlusSkew::backward: G must be ",
                 ::peft::detail::shape_str(forward_rows_, n_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    detail::prepare_output(dX, G.rows(), n_, accumulate, "CirculantPlusSkew::backward");
    if (!panels_) {
      circulant_->backward(G, dX, dkernel, scale, accumulate);
      skew_->backward(G, dX, dkernel != nullptr ? dkernel + n_ : nullptr, scale, true);
      return;
    }
    if constexpr (kPanels) {
      run_panels<true>(G, dX, dkernel, true, scale, accumulate);
    }
  }

 private:
  // forward; with Keep, the panels' input spectra stay for backward (the row
  // path's are its working buffers either way); without, backward takes no batch.
  template <bool Keep>
  void run_forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale, bool accumulate, const char* who) {
    PEFT_REQUIRE(X.cols() == n_, who, ": X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    detail::prepare_output(Y, X.rows(), n_, accumulate, who);
    forward_rows_ = Keep ? X.rows() : 0;
    if (!panels_) {
      circulant_->forward(X, Y, scale, accumulate);
      skew_->forward(X, Y, scale, true);
      return;
    }
    if constexpr (kPanels) {
      run_panels<Keep>(X, Y, nullptr, false, scale, accumulate);
    }
  }

  static Index checked(Index n) {
    PEFT_REQUIRE(n >= 1, "CirculantPlusSkew: size must be >= 1, got ", n);
    return n;
  }

  // The panel path's plans, kernel spectra, kept input spectra and buffers.
  struct Panels {
    explicit Panels(Index n) : real(n), skew(n) {
      c_hat.resize(real.bins());
      s_hat.resize(skew.bins());
    }
    Plan real;
    SkewPlan skew;
    Eigen::Matrix<std::complex<T>, 1, Eigen::Dynamic> c_hat, s_hat;
    detail::PanelSpectra<T> x_real, x_skew;  // F(x) and N(x) from forward
    detail::PanelWorkers<Plan> workers;      // per thread: two panels, backward's two kernel-gradient sums
    detail::CorrelationScratch<T> correlation;
  };

  // Out (sized) = or += scale · rows of S·in (or Sᵀ·in with `adjoint`). In
  // forward the spectra of in are kept (unless not Keep: inference); in
  // backward the kernel gradient (dkernel, when not null) is summed against them.
  template <bool Keep>
  void run_panels(const ConstMatrixRef<T>& In, Matrix<T>& Out, T* dkernel, bool adjoint, T scale, bool accumulate)
    requires kPanels
  {
    Panels& P = *panels_;
    const Index real_bins = P.real.bins(), skew_bins = P.skew.bins();
    if (Keep && !adjoint) {
      P.x_real.resize(In.rows(), real_bins);
      P.x_skew.resize(In.rows(), skew_bins);
    }
    const bool kernel_grad = adjoint && dkernel != nullptr;
    const Index sum_bins[] = {real_bins, skew_bins};
    P.workers.prepare(P.real, In.rows(), 2, kernel_grad ? std::span<const Index>(sum_bins) : std::span<const Index>());
    P.workers.run(In.rows(), [&](auto& w, Index r0, int lanes, Index p) {
      Lane *a = w.buffer(0), *b = w.buffer(1);
      w.plan->load_panel(In.data() + r0 * In.outerStride(), In.outerStride(), lanes, a);
      w.plan->real_layout_to_negacyclic_forward(a, b, T(1));
      // Per bin: keep x's spectrum (forward) or add to the kernel gradient's
      // sum (backward), then multiply by the kernel's spectrum (conj in backward).
      Lane *kept_c = Keep ? P.x_real.panel(p) : nullptr, *kept_s = Keep ? P.x_skew.panel(p) : nullptr;
      Sum *sum_c = kernel_grad ? w.sums[0].data() : nullptr, *sum_s = kernel_grad ? w.sums[1].data() : nullptr;
      auto per_bin = [adjoint](Lane* kept, Sum* sums, std::complex<T> v_hat, Index k, Lane& v) {
        if (!adjoint) {
          if constexpr (Keep) kept[k] = v;
        } else if (sums != nullptr) {
          fft::detail::add_conj_product_folded(sums[k], kept[k], v);
        }
        fft::detail::multiply_lane(v, adjoint ? std::conj(v_hat) : v_hat);
      };
      w.plan->around_spectrum(a, [&](Index k, Lane& v) { per_bin(kept_c, sum_c, P.c_hat[k], k, v); });
      for (Index k = 0; k < skew_bins; ++k) per_bin(kept_s, sum_s, P.s_hat[k], k, b[k]);
      w.plan->negacyclic_inverse_to_real_layout(b, a, T(1), true);
      w.plan->store_panel(a, Out.data() + r0 * n_, n_, lanes, scale / static_cast<T>(n_), accumulate);
    });
    if (!kernel_grad) return;
    P.workers.reduce_sums(0, P.correlation.sum_for(real_bins));
    detail::add_inverse_of_sum(P.real, dkernel, n_, P.correlation, scale);
    P.workers.reduce_sums(1, P.correlation.sum_for(skew_bins));
    detail::add_inverse_of_sum(P.skew, dkernel + n_, n_, P.correlation, scale);
  }

  Index n_;
  Index forward_rows_ = 0;
  std::optional<Panels> panels_;                 // our engine, even n
  std::optional<Circulant<T, Plan>> circulant_;  // every other case
  std::optional<SkewCirculant<T, Plan>> skew_;
};

}  // namespace peft::structured
