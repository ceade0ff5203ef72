// Google Benchmark: real FFT backends on our workload, two ways.
//   BM_RealFFT            forward + inverse of a rows x n block through the
//                         row interface (row-major half spectra in between)
//   BM_CirculantProduct   one circulant product Y = F⁻¹(ĉ ⊙ F(X)), the
//                         structured adapters' inner loop, as the library
//                         runs it: structured::Circulant on each backend
//                         (ours keeps the spectrum in its panels; kissfft and
//                         FFTW go through row-major spectra; all keep x̂ for
//                         the backward, as the adapters need)
// Each iteration times every backend once, interleaved, so the counters are
// ratios of medians from one run: ours_vs_fftw (< 1: ours is faster) and
// kiss_vs_ours (how many times faster ours is than Eigen's kissfft).
// FFTW plans: batched r2c/c2r (plan_many), FFTW_MEASURE, made before timing.
#include <benchmark/benchmark.h>

#include <functional>
#include <vector>

#include <peft/fft/fft.hpp>
#include <peft/structured/circulant.hpp>

#include "timing.hpp"

namespace {

using namespace peft;

template <class Plan>
std::function<void()> round_trip(Plan& plan, const Matrix<typename Plan::Scalar>& X,
                                 fft::ComplexMatrix<typename Plan::Scalar>& S, Matrix<typename Plan::Scalar>& Y) {
  using T = typename Plan::Scalar;
  return [&plan, &X, &S, &Y] {
    const Index n = plan.size(), rows = X.rows();
    plan.forward(X.data(), n, S.data(), plan.bins(), rows);
    plan.inverse(S.data(), plan.bins(), Y.data(), n, rows, T(1) / static_cast<T>(n));
    benchmark::DoNotOptimize(Y.data());
  };
}

/// Medians of interleaved runs of cases (ours, kissfft[, FFTW]) as counters.
void report(benchmark::State& state, std::vector<std::function<void()>>& cases, Index rows) {
  for (auto& c : cases) c();  // warm-up; FFTW plans here, outside the timing
  std::vector<std::vector<double>> times(cases.size());
  for (auto _ : state)
    for (std::size_t c = 0; c < cases.size(); ++c) times[c].push_back(bench::seconds_of(cases[c]));
  std::vector<double> med;
  for (auto& t : times) med.push_back(bench::median(t));
  state.counters["ours_us"] = med[0] * 1e6;
  state.counters["kiss_vs_ours"] = med[1] / med[0];
#ifdef PEFT_WITH_FFTW
  state.counters["fftw_us"] = med[2] * 1e6;
  state.counters["ours_vs_fftw"] = med[0] / med[2];
#endif
  state.SetItemsProcessed(state.iterations() * rows);
}

template <class T>
void BM_RealFFT(benchmark::State& state) {
  const Index n = state.range(0), rows = state.range(1);
  const Matrix<T> X = Matrix<T>::Random(rows, n);
  fft::ComplexMatrix<T> S(rows, n / 2 + 1);
  Matrix<T> Y(rows, n);
  fft::VectorizedFFT<T> ours(n);
  fft::KissFFT<T> kiss(n);
  std::vector<std::function<void()>> cases{round_trip(ours, X, S, Y), round_trip(kiss, X, S, Y)};
#ifdef PEFT_WITH_FFTW
  fft::FFTWPlan<T> fftw(n, FFTW_MEASURE);
  cases.push_back(round_trip(fftw, X, S, Y));
#endif
  report(state, cases, rows);
}

template <class T, class Plan>
std::function<void()> circulant_product(structured::Circulant<T, Plan>& product, const Matrix<T>& X, Matrix<T>& Y) {
  return [&product, &X, &Y] {
    product.forward(X, Y);
    benchmark::DoNotOptimize(Y.data());
  };
}

template <class T>
void BM_CirculantProduct(benchmark::State& state) {
  const Index n = state.range(0), rows = state.range(1);
  const Matrix<T> X = Matrix<T>::Random(rows, n);
  const Vector<T> c = Vector<T>::Random(n);
  Matrix<T> Y(rows, n);
  structured::Circulant<T, fft::VectorizedFFT<T>> ours(n);
  structured::Circulant<T, fft::KissFFT<T>> kiss(n);
  ours.set_kernel(c.data());
  kiss.set_kernel(c.data());
  std::vector<std::function<void()>> cases{circulant_product(ours, X, Y), circulant_product(kiss, X, Y)};
#ifdef PEFT_WITH_FFTW
  structured::Circulant<T, fft::FFTWPlan<T>> fftw(n);
  fftw.set_kernel(c.data());
  cases.push_back(circulant_product(fftw, X, Y));
#endif
  report(state, cases, rows);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "rows"})->ArgsProduct({{64, 256, 768, 1000, 1021, 4096}, {1, 32, 256}})->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_RealFFT, float)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_RealFFT, double)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_CirculantProduct, float)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_CirculantProduct, double)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
