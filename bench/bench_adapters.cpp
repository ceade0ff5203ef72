// Google Benchmark: RED, IA3 (output and feed-forward), MELoRA, LoRTA and LoKr
// beside the frozen base, d ∈ {768, 4096}, N ∈ {32, 256}, float.
#include "adapter_bench.hpp"

#include <memory>

namespace {

using namespace peft;

template <class S>
void BM_FrozenBase(benchmark::State& state) { bench::run_base<S>(state); }
using T = float;

void BM_RED(benchmark::State& s) { bench::run_adapter<RED<T>>(s, [](Index d) { return RED<T>(d, d); }); }
void BM_IA3(benchmark::State& s) { bench::run_adapter<IA3<T>>(s, [](Index d) { return IA3<T>(d, d); }); }
void BM_IA3_feedforward(benchmark::State& s) {
  bench::run_adapter<IA3<T>>(s, [](Index d) { return IA3<T>(d, d, {.feedforward = true}); });
}
void BM_MELoRA_r8_n2(benchmark::State& s) {
  bench::run_adapter<MELoRA<T>>(s, [](Index d) { return MELoRA<T>(d, d, {.r = 8, .n = 2, .init = LoRAInit::None}); });
}
void BM_LoRTA_r8(benchmark::State& s) {
  bench::run_adapter<LoRTA<T>>(s, [](Index d) {
    // One factor set for a 12-layer model with q, k, v, o and 64-wide heads.
    auto factors = std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = 8, .d = d, .heads = d / 64, .layers = 12});
    return LoRTA<T>(factors, 0, 0);
  });
}
void BM_LoKr_r8(benchmark::State& s) {
  bench::run_adapter<LoKr<T>>(s, [](Index d) { return LoKr<T>(d, d, {.r = 8, .init = LoKrInit::Random}); });
}

BENCHMARK_TEMPLATE(BM_FrozenBase, T)->Apply(bench::layer_shapes);
BENCHMARK(BM_RED)->Apply(bench::layer_shapes);
BENCHMARK(BM_IA3)->Apply(bench::layer_shapes);
BENCHMARK(BM_IA3_feedforward)->Apply(bench::layer_shapes);
BENCHMARK(BM_MELoRA_r8_n2)->Apply(bench::layer_shapes);
BENCHMARK(BM_LoRTA_r8)->Apply(bench::layer_shapes);
BENCHMARK(BM_LoKr_r8)->Apply(bench::layer_shapes);

}  // namespace

BENCHMARK_MAIN();
