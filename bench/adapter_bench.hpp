#pragma once
// One Google Benchmark body for every adapter: forward + backward of an
// Adapted<A> around a d x d frozen layer (args: d, N), with the frozen base
// timed interleaved in the same loop so `overhead_pct` compares medians from
// one run. Counters: params, GFLOPS (whole layer), items/s (rows).

#include <benchmark/benchmark.h>

#include <functional>
#include <vector>

#include <peft/peft.hpp>

#include "timing.hpp"

namespace peft::bench {

template <class T>
void run_base(benchmark::State& state) {
  const Index d = state.range(0), N = state.range(1);
  Rng rng(1);
  const auto base = Linear<T>::random(d, d, rng);
  const Matrix<T> X = Matrix<T>::Random(N, d), dY = Matrix<T>::Random(N, d);
  Matrix<T> Y, dX;
  for (auto _ : state) {
    base.forward(X, Y);
    base.backward(dY, dX);
    benchmark::DoNotOptimize(dX.data());
  }
  state.counters["params"] = 0;
  state.counters["GFLOPS"] = benchmark::Counter(base.flops(N) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetItemsProcessed(state.iterations() * N);
}

/// `make(d)` builds the adapter for a d x d layer.
template <class A>
void run_adapter(benchmark::State& state, const std::function<A(Index)>& make) {
  using T = typename A::Scalar;
  const Index d = state.range(0), N = state.range(1);
  Rng rng(1);
  const auto base = Linear<T>::random(d, d, rng);
  Adapted<A> layer(base, make(d));
  const Matrix<T> X = Matrix<T>::Random(N, d), dY = Matrix<T>::Random(N, d);
  Matrix<T> Y, dX;
  auto adapted_step = [&] {
    layer.forward(X, Y);
    layer.backward(dY, dX);
    benchmark::DoNotOptimize(dX.data());
  };
  auto base_step = [&] {
    base.forward(X, Y);
    base.backward(dY, dX);
    benchmark::DoNotOptimize(dX.data());
  };
  adapted_step();  // warm-up: sizes the caches
  std::vector<double> base_times, adapted_times;
  for (auto _ : state) {
    state.PauseTiming();
    base_times.push_back(seconds_of(base_step));
    state.ResumeTiming();
    adapted_times.push_back(seconds_of(adapted_step));
  }
  state.counters["params"] = static_cast<double>(layer.adapter().num_params());
  state.counters["GFLOPS"] = benchmark::Counter(layer.flops(N) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["overhead_pct"] = 100.0 * (median(adapted_times) / median(base_times) - 1.0);
  state.SetItemsProcessed(state.iterations() * N);
}

inline void layer_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"d", "N"})->ArgsProduct({{768, 4096}, {32, 256}})->Unit(benchmark::kMillisecond);
}

}  // namespace peft::bench
