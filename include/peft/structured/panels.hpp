#pragma once
// Structured products on our FFT engine's panels (fft/vectorized.hpp): a
// panel of L rows is loaded into lanes once, then transformed, multiplied
// and transformed back without going to rows in between, and spectra kept
// for backward stay in lane layout. Against the row functions this saves,
// per product, the transpose of the spectrum out to rows and back in, and
// the kernel gradient's batch sum runs on whole vectors.

#include <algorithm>
#include <complex>
#include <concepts>
#include <vector>

#include <peft/core/types.hpp>
#include <peft/fft/lanes.hpp>
#include <peft/fft/vectorized.hpp>

namespace peft::structured::detail {

/// A plan with the panel interface (our engine, and the negacyclic transform
/// on it); has_panels() says whether this plan's length can use it.
template <class Plan>
concept PanelPlan = requires(Plan& p, const typename Plan::Scalar* x, typename Plan::Scalar* y,
                             typename Plan::Lane* z) {
  { p.has_panels() } -> std::convertible_to<bool>;
  p.panel_slots();
  p.load_panel(x, Index{}, int{}, z);
  p.around_spectrum(z, fft::NoVisit{});
  p.store_panel(z, y, Index{}, int{}, typename Plan::Scalar{}, bool{});
};

/// Whether `plan` runs on panels: a PanelPlan whose length allows it.
template <class Plan>
bool uses_panels(const Plan& plan) {
  if constexpr (PanelPlan<Plan>) return plan.has_panels();
  else return false;
}

using fft::detail::for_each_panel;

/// Spectra of a block of rows kept in lane layout: `bins` Lanes per panel.
template <class T>
class PanelSpectra {
 public:
  using Lane = fft::detail::LaneComplex<T>;

  void resize(Index rows, Index bins) {
    bins_ = bins;
    const Index panels = (rows + fft::detail::Lanes<T>::count - 1) / fft::detail::Lanes<T>::count;
    data_.resize(static_cast<std::size_t>(panels * bins));
  }
  Lane* panel(Index p) { return data_.data() + p * bins_; }
  const Lane* panel(Index p) const { return data_.data() + p * bins_; }

 private:
  Index bins_ = 0;
  std::vector<Lane> data_;
};

/// A per-lane batch sum of conj(x̂)⊙ĝ, reduced over lanes at the end.
template <class T>
struct LaneSums {
  using Lane = fft::detail::LaneComplex<T>;
  std::vector<Lane> sums;

  void reset(Index bins) { sums.assign(static_cast<std::size_t>(bins), Lane{}); }
  Lane* data() { return sums.data(); }
  /// out[k] = Σ over lanes of sums[k].
  void reduce(std::complex<T>* out) const {
    fft::detail::reduce_lanes(sums.data(), out, static_cast<Index>(sums.size()));
  }
};

}  // namespace peft::structured::detail
