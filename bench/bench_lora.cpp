// Google Benchmark: forward + backward of the frozen base alone and of LoRA
// r ∈ {8, 64}, d ∈ {768, 4096}, N ∈ {32, 256}, float and double.
// Counters: params (trainable), GFLOPS (matrix-product flops of the whole
// adapted layer), items/s (rows), and for LoRA overhead_pct: the median
// adapted time over the median frozen-base time, timed interleaved.
#include <benchmark/benchmark.h>

#include <peft/peft.hpp>

#include "timing.hpp"

namespace {

using peft::Index;

template <class T>
struct Problem {
  peft::Matrix<T> X, dY;
  peft::Linear<T> base;
  Problem(Index d, Index N, peft::Rng& rng)
      : X(peft::Matrix<T>::Random(N, d)), dY(peft::Matrix<T>::Random(N, d)), base(peft::Linear<T>::random(d, d, rng)) {}
};

template <class Layer, class T>
void forward_backward(Layer& layer, const peft::Matrix<T>& X, const peft::Matrix<T>& dY, peft::Matrix<T>& Y,
                      peft::Matrix<T>& dX) {
  layer.forward(X, Y);
  layer.backward(dY, dX);
  benchmark::DoNotOptimize(dX.data());
  benchmark::ClobberMemory();
}

void set_counters(benchmark::State& state, double params, double flops) {
  state.counters["params"] = params;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetItemsProcessed(state.iterations() * state.range(1));
}

template <class T>
void BM_FrozenBase(benchmark::State& state) {
  peft::Rng rng(1);
  Problem<T> p(state.range(0), state.range(1), rng);
  peft::Matrix<T> Y, dX;
  forward_backward(p.base, p.X, p.dY, Y, dX);  // warm-up outside the loop
  for (auto _ : state) forward_backward(p.base, p.X, p.dY, Y, dX);
  set_counters(state, 0, p.base.flops(state.range(1)));
}

template <class T>
void BM_LoRA(benchmark::State& state) {
  peft::Rng rng(1);
  Problem<T> p(state.range(0), state.range(1), rng);
  const Index d = state.range(0), r = state.range(2);
  peft::Adapted layer(p.base, peft::LoRA<T>(d, d, {.r = r, .alpha = 2.0 * r, .init = peft::LoRAInit::None}));
  peft::Matrix<T> Y, dX;
  forward_backward(layer, p.X, p.dY, Y, dX);
  std::vector<double> base_times, adapted_times;
  for (auto _ : state) {
    state.PauseTiming();
    base_times.push_back(peft::bench::seconds_of([&] { forward_backward(p.base, p.X, p.dY, Y, dX); }));
    state.ResumeTiming();
    adapted_times.push_back(peft::bench::seconds_of([&] { forward_backward(layer, p.X, p.dY, Y, dX); }));
  }
  set_counters(state, static_cast<double>(layer.adapter().num_params()), layer.flops(state.range(1)));
  state.counters["overhead_pct"] =
      100.0 * (peft::bench::median(adapted_times) / peft::bench::median(base_times) - 1.0);
}

void base_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"d", "N"})->ArgsProduct({{768, 4096}, {32, 256}})->Unit(benchmark::kMillisecond);
}
void lora_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"d", "N", "r"})->ArgsProduct({{768, 4096}, {32, 256}, {8, 64}})->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_FrozenBase, float)->Apply(base_args);
BENCHMARK_TEMPLATE(BM_LoRA, float)->Apply(lora_args);
BENCHMARK_TEMPLATE(BM_FrozenBase, double)->Apply(base_args);
BENCHMARK_TEMPLATE(BM_LoRA, double)->Apply(lora_args);

}  // namespace

BENCHMARK_MAIN();
