// Google Benchmark: real FFT backends on our workload, forward + inverse of a
// rows x n block (a circulant product without the pointwise multiply).
// Each iteration times every backend once, interleaved, so the counters are
// ratios of medians from one run: ours_vs_fftw (< 1: ours is faster) and
// kiss_vs_ours (how many times faster ours is than Eigen's kissfft).
// FFTW plans: batched r2c/c2r (plan_many), FFTW_MEASURE, made before timing.
#include <benchmark/benchmark.h>

#include <functional>
#include <vector>

#include <peft/fft/fft.hpp>

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

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "rows"})->ArgsProduct({{64, 256, 768, 1000, 1021, 4096}, {1, 32, 256}})->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_RealFFT, float)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_RealFFT, double)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
