#pragma once
// Structured products on our FFT engine's panels (fft/vectorized.hpp): a
// panel of L rows is loaded into lanes once, then transformed, multiplied
// and transformed back without going to rows in between, and spectra kept
// for backward stay in lane layout. Against the row functions this saves,
// per product, the transpose of the spectrum out to rows and back in, and
// the kernel gradient's batch sum runs on whole vectors.
//
// Panels are independent, so a product splits them over threads (OpenMP,
// as many as Eigen::nbThreads(), so one setting governs the GEMMs and the
// FFTs): each thread has its own plan (the engine keeps its scratch in the
// plan), panel buffers and kernel-gradient lane sums (PanelWorkers); kept
// spectra are per panel, so threads write disjoint parts.

#include <algorithm>
#include <complex>
#include <concepts>
#include <span>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

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

/// A batch sum of conj(x̂)⊙ĝ per bin, kept in folded lanes
/// (fft::detail::SumComplex) and reduced over them at the end.
template <class T>
struct LaneSums {
  using Sum = fft::detail::SumComplex<T>;
  std::vector<Sum> sums;

  void reset(Index bins) { sums.assign(static_cast<std::size_t>(bins), Sum{}); }
  Sum* data() { return sums.data(); }
  /// out[k] = Σ over lanes of sums[k].
  void reduce(std::complex<T>* out) const {
    fft::detail::reduce_lanes(sums.data(), out, static_cast<Index>(sums.size()));
  }
};

/// Threads for a loop over `panels` panels: Eigen::nbThreads() (set with
/// Eigen::setNbThreads or OMP_NUM_THREADS) when built with OpenMP, at most
/// one per panel; 1 without OpenMP.
inline int panel_threads(Index panels) {
#ifdef _OPENMP
  return static_cast<int>(std::clamp<Index>(Eigen::nbThreads(), 1, std::max<Index>(panels, 1)));
#else
  (void)panels;
  return 1;
#endif
}

/// What each thread of a panel loop has to itself. Worker 0 uses the
/// product's own plan, the others copies of it, made on first use and kept.
template <class Plan>
class PanelWorkers {
 public:
  using T = typename Plan::Scalar;
  using Lane = fft::detail::LaneComplex<T>;

  struct Worker {
    Plan* plan = nullptr;
    std::vector<Lane> buffers;        // panel buffers, panel_slots() each
    std::vector<LaneSums<T>> sums;    // kernel-gradient sums
    Lane* buffer(int i) { return buffers.data() + static_cast<std::size_t>(i) * slots(); }
    std::size_t slots() const { return static_cast<std::size_t>(plan->panel_slots()); }
  };

  /// Readies one worker per thread for a loop over `rows` rows: `buffers`
  /// panel buffers each, and zeroed lane sums of sum_bins[i] bins (none if
  /// empty). Allocates only when the shapes grow.
  void prepare(Plan& plan, Index rows, int buffers, std::span<const Index> sum_bins = {}) {
    const Index panels = (rows + Plan::panel_rows - 1) / Plan::panel_rows;
    const int threads = panel_threads(panels);
    while (static_cast<int>(copies_.size()) < threads - 1) copies_.push_back(plan);
    workers_.resize(static_cast<std::size_t>(threads));
    for (int w = 0; w < threads; ++w) {
      Worker& worker = workers_[static_cast<std::size_t>(w)];
      worker.plan = w == 0 ? &plan : &copies_[static_cast<std::size_t>(w - 1)];
      worker.buffers.resize(static_cast<std::size_t>(buffers) * worker.slots());
      // Never shrunk: forward asks for no sums, backward for some, and the
      // sums' storage must survive the forward in between.
      if (worker.sums.size() < sum_bins.size()) worker.sums.resize(sum_bins.size());
      for (std::size_t i = 0; i < sum_bins.size(); ++i) worker.sums[i].reset(sum_bins[i]);
    }
  }

  /// f(worker, first_row, lanes, panel) for each panel of `rows` rows (the
  /// last may be ragged), the panels split over the prepared workers' threads.
  /// f must not throw.
  template <class F>
  void run(Index rows, F&& f) {
    const int L = Plan::panel_rows;
    const Index panels = (rows + L - 1) / L;
    [[maybe_unused]] const int threads = static_cast<int>(workers_.size());
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (Index p = 0; p < panels; ++p) {
#ifdef _OPENMP
      Worker& worker = workers_[static_cast<std::size_t>(omp_get_thread_num())];
#else
      Worker& worker = workers_[0];
#endif
      f(worker, p * L, static_cast<int>(std::min<Index>(L, rows - p * L)), p);
    }
  }

  /// out[k] = Σ over workers and lanes of sum i's bin k.
  void reduce_sums(std::size_t i, std::complex<T>* out) {
    LaneSums<T>& total = workers_[0].sums[i];
    for (std::size_t w = 1; w < workers_.size(); ++w) {
      const LaneSums<T>& part = workers_[w].sums[i];
      for (std::size_t k = 0; k < total.sums.size(); ++k) {
        total.sums[k].re += part.sums[k].re;
        total.sums[k].im += part.sums[k].im;
      }
    }
    total.reduce(out);
  }

 private:
  std::vector<Plan> copies_;
  std::vector<Worker> workers_;
};

}  // namespace peft::structured::detail
