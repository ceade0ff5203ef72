// Google Benchmark: frozen base alone and LoRA r ∈ {8, 64}, d ∈ {768, 4096},
// N ∈ {32, 256}, float and double (see adapter_bench.hpp for the counters).
#include "adapter_bench.hpp"

namespace {

using namespace peft;

template <class S>
void BM_FrozenBase(benchmark::State& state) { bench::run_base<S>(state); }

template <class T, Index R>
void BM_LoRA(benchmark::State& state) {
  bench::run_adapter<LoRA<T>>(state, [](Index d) { return LoRA<T>(d, d, {.r = R, .alpha = 2.0 * R, .init = LoRAInit::None}); });
}

BENCHMARK_TEMPLATE(BM_FrozenBase, float)->Apply(bench::layer_shapes);
BENCHMARK_TEMPLATE(BM_LoRA, float, 8)->Apply(bench::layer_shapes);
BENCHMARK_TEMPLATE(BM_LoRA, float, 64)->Apply(bench::layer_shapes);
BENCHMARK_TEMPLATE(BM_FrozenBase, double)->Apply(bench::layer_shapes);
BENCHMARK_TEMPLATE(BM_LoRA, double, 8)->Apply(bench::layer_shapes);
BENCHMARK_TEMPLATE(BM_LoRA, double, 64)->Apply(bench::layer_shapes);

}  // namespace

BENCHMARK_MAIN();
