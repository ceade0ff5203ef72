#pragma once
// Circulant products through real FFTs, O(n log n) per row instead of O(n²).
//   Circ(c)[i][j] = c[(i − j) mod n]        (first column c)
//   forward   y = Circ(c)·x       ŷ = ĉ ⊙ x̂
//   input     dx = Circ(c)ᵀ·g      dx̂ = conj(ĉ) ⊙ ĝ
//   kernel    dc = Σ_rows x ⋆ g    dc = irfft(Σ_rows conj(x̂) ⊙ ĝ)  (summed in
//             the frequency domain, one inverse FFT)
// Rows of X are the vectors (PyTorch layout). x̂ is kept from forward for dc.
// On our engine each panel of rows goes through transform, product and
// inverse in lanes (panels.hpp), and x̂ is kept in lane layout.

#include <span>
#include <string>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>
#include <peft/fft/fft.hpp>
#include <peft/structured/correlation.hpp>
#include <peft/structured/panels.hpp>
#include <peft/structured/spectral.hpp>

namespace peft::structured {

/// The dense n x n matrix Circ(c), the oracle for tests.
template <class T>
Matrix<T> circulant_dense(const Eigen::Ref<const Vector<T>>& c) {
  const Index n = c.size();
  Matrix<T> M(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) M(i, j) = c[((i - j) % n + n) % n];
  return M;
}

namespace detail {

/// y = scale · F⁻¹(ĉ ⊙ F(x)) for a plan F whose spectrum diagonalises the
/// structure (the real FFT for circulants, the negacyclic transform for
/// skew-circulants), with its transpose and kernel gradient:
///   input   dx = F⁻¹(conj(ĉ) ⊙ F(g)),   kernel   dc = F⁻¹(Σ_rows conj(x̂) ⊙ ĝ)
template <class T, class Plan>
class DiagonalisedProduct {
 public:
  DiagonalisedProduct(Index n, const char* name)
      : n_(checked_size(n, name)), plan_(n), forward_who_(std::string(name) + "::forward"),
        backward_who_(std::string(name) + "::backward") {
    c_hat_.resize(plan_.bins());
  }

  Index size() const { return n_; }

  /// Sets c (n entries) and computes its spectrum once.
  void set_kernel(const T* c) { plan_.forward(c, n_, c_hat_.data(), plan_.bins(), 1); }

  /// Y = scale · rows M·x of X (N x n); with `accumulate`, Y (N x n)
  /// += that instead (an adapter adds its update to the base output in place).
  void forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<true>(X, Y, scale, accumulate);
  }

  /// forward keeping nothing for backward: the inference path, on a product
  /// the calling thread owns. Backward needs a new forward.
  void apply(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale = T(1), bool accumulate = false) {
    run_forward<false>(X, Y, scale, accumulate);
  }

  /// dX = scale · rows Mᵀ·g of G (or += with `accumulate`); dc (n entries,
  /// may be null) += scale · its gradient, with x from the last forward.
  void backward(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dc, T scale = T(1), bool accumulate = false) {
    PEFT_REQUIRE(G.cols() == n_ && G.rows() == forward_rows_, backward_who_, ": G must be ",
                 ::peft::detail::shape_str(forward_rows_, n_), " like the last forward, got ",
                 ::peft::detail::shape_str(G.rows(), G.cols()));
    const T inverse_scale = scale / static_cast<T>(n_);
    if (uses_panels(plan_)) {
      prepare_output(dX, G.rows(), n_, accumulate, backward_who_.c_str());
      if constexpr (PanelPlan<Plan>) backward_panels(G, dX, dc, inverse_scale, scale, accumulate);
      return;
    }
    fft::forward(plan_, G, g_hat_);
    if (dc != nullptr) detail::add_correlation(plan_, x_hat_, g_hat_, dc, n_, correlation_, scale);
    detail::inverse_of_product<true>(plan_, g_hat_, c_hat_.data(), work_, dX, inverse_scale, accumulate,
                                     backward_who_.c_str());
  }

 private:
  // forward; with Keep, x̂ stays for backward (the row path's x̂ is its
  // working buffer either way); without, backward takes no batch until a new forward.
  template <bool Keep>
  void run_forward(const ConstMatrixRef<T>& X, Matrix<T>& Y, T scale, bool accumulate) {
    PEFT_REQUIRE(X.cols() == n_, forward_who_, ": X must have n = ", n_, " columns, got ",
                 ::peft::detail::shape_str(X.rows(), X.cols()));
    forward_rows_ = Keep ? X.rows() : 0;
    const T inverse_scale = scale / static_cast<T>(n_);
    if (uses_panels(plan_)) {
      prepare_output(Y, X.rows(), n_, accumulate, forward_who_.c_str());
      if constexpr (PanelPlan<Plan>) forward_panels<Keep>(X, Y, inverse_scale, accumulate);
      return;
    }
    fft::forward(plan_, X, x_hat_);
    detail::inverse_of_product<false>(plan_, x_hat_, c_hat_.data(), work_, Y, inverse_scale, accumulate,
                                      forward_who_.c_str());
  }

  // Y (sized) = or += inverse_scale · F⁻¹(ĉ ⊙ F(x)) per panel; x̂ kept if Keep.
  template <bool Keep>
  void forward_panels(const ConstMatrixRef<T>& X, Matrix<T>& Y, T inverse_scale, bool accumulate)
    requires PanelPlan<Plan>
  {
    if constexpr (Keep) x_panels_.resize(X.rows(), plan_.bins());
    workers_.prepare(plan_, X.rows(), 1);
    workers_.run(X.rows(), [&](auto& w, Index r0, int lanes, Index p) {
      Lane* z = w.buffer(0);
      w.plan->load_panel(X.data() + r0 * X.outerStride(), X.outerStride(), lanes, z);
      auto* x_hat = Keep ? x_panels_.panel(p) : nullptr;
      w.plan->around_spectrum(z, [&](Index k, Lane& x) {
        if constexpr (Keep) x_hat[k] = x;
        fft::detail::multiply_lane(x, c_hat_[k]);
      });
      w.plan->store_panel(z, Y.data() + r0 * n_, n_, lanes, inverse_scale, accumulate);
    });
  }

  // dX (sized) += inverse_scale · F⁻¹(conj(ĉ) ⊙ F(g)) per panel, and the
  // kernel gradient summed per lane against the kept x̂.
  void backward_panels(const ConstMatrixRef<T>& G, Matrix<T>& dX, T* dc, T inverse_scale, T scale, bool accumulate)
    requires PanelPlan<Plan>
  {
    const Index bins = plan_.bins();
    const Index sum_bins[] = {bins};
    workers_.prepare(plan_, G.rows(), 1, dc != nullptr ? std::span<const Index>(sum_bins) : std::span<const Index>());
    workers_.run(G.rows(), [&](auto& w, Index r0, int lanes, Index p) {
      Lane* z = w.buffer(0);
      w.plan->load_panel(G.data() + r0 * G.outerStride(), G.outerStride(), lanes, z);
      const Lane* x_hat = x_panels_.panel(p);
      auto* sums = dc != nullptr ? w.sums[0].data() : nullptr;
      w.plan->around_spectrum(z, [&](Index k, Lane& g) {
        if (sums != nullptr) fft::detail::add_conj_product_folded(sums[k], x_hat[k], g);
        fft::detail::multiply_lane(g, std::conj(c_hat_[k]));
      });
      w.plan->store_panel(z, dX.data() + r0 * n_, n_, lanes, inverse_scale, accumulate);
    });
    if (dc == nullptr) return;
    workers_.reduce_sums(0, correlation_.sum_for(bins));
    detail::add_inverse_of_sum(plan_, dc, n_, correlation_, scale);
  }

  static Index checked_size(Index n, const char* name) {
    PEFT_REQUIRE(n >= 1, name, ": size must be >= 1, got ", n);
    return n;
  }

  using Lane = fft::detail::LaneComplex<T>;

  Index n_;
  Plan plan_;
  std::string forward_who_, backward_who_;  // error-message prefixes
  Eigen::Matrix<std::complex<T>, 1, Eigen::Dynamic> c_hat_;
  detail::CorrelationScratch<T> correlation_;
  Index forward_rows_ = 0;
  fft::ComplexMatrix<T> x_hat_, g_hat_, work_;  // row path
  // Panel path: x̂ in lane layout; per thread a plan, a panel buffer and the per-lane dc sum.
  PanelSpectra<T> x_panels_;
  PanelWorkers<Plan> workers_;
};

}  // namespace detail

/// Circ(c)·x for every row x of X through real FFTs, with its transpose and kernel
/// gradient (Circ(c)[i][j] = c[(i − j) mod n]). Its members come from
/// detail::DiagonalisedProduct: size(); set_kernel(c) (n entries, spectrum kept);
/// forward(X, Y, scale = 1, accumulate = false): Y = (or +=) scale·rows Circ(c)·x;
/// apply(X, Y, scale = 1, accumulate = false): forward keeping nothing for backward
/// (inference, on a product the calling thread owns);
/// backward(G, dX, dc, scale = 1, accumulate = false): dX = (or +=) scale·rows Circ(c)ᵀ·g
/// and dc (n entries, may be null) += scale·dL/dc, against the last forward.
/// forward and backward throw peft::Error on a shape mismatch.
template <class T, class Plan = fft::RealFFT<T>>
class Circulant : public detail::DiagonalisedProduct<T, Plan> {
 public:
  /// A product of size n x n; throws peft::Error unless n >= 1.
  explicit Circulant(Index n) : detail::DiagonalisedProduct<T, Plan>(n, "Circulant") {}
};

}  // namespace peft::structured
