// Google Benchmark: SURM structures, C3A and the SURM/Houlsby adapters beside
// the frozen base, d ∈ {768, 1000, 4096}, N ∈ {32, 256, 2048}, float; plus
// "dense ΔW" references that form ΔW every step and multiply by it, the way
// PEFT's C3A and LoKr run on a CPU, to show what the FFT path saves.
#include "adapter_bench.hpp"

namespace {

using namespace peft;
using T = float;

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"d", "N"})->ArgsProduct({{768, 1000, 4096}, {32, 256, 2048}})->Unit(benchmark::kMillisecond);
}

template <Structure S, Index Rank = 1>
void BM_SURM(benchmark::State& s) {
  bench::run_adapter<SURM<T>>(s, [](Index d) { return SURM<T>(d, d, {.structure = S, .rank = Rank}); });
}

void BM_C3A_b64(benchmark::State& s) {
  if (s.range(0) % 64 != 0) return s.SkipWithError("block size 64 does not divide d");
  bench::run_adapter<C3A<T>>(s, [](Index d) { return C3A<T>(d, d, {.block_size = 64}); });
}
void BM_SURMAdapter_circulant(benchmark::State& s) {
  bench::run_adapter<SURMAdapter<T>>(s, [](Index d) { return SURMAdapter<T>(d, d, {}); });
}
void BM_Houlsby_m64(benchmark::State& s) {
  bench::run_adapter<Houlsby<T>>(s, [](Index d) { return Houlsby<T>(d, d, {.bottleneck = 64}); });
}

/// The dense-ΔW way for an adapter A: form ΔW, then Y = X·(ΔW)ᵀ and dX = G·ΔW
/// (the adapter's share of forward + input gradient, without parameter grads).
template <class A>
void dense_delta(benchmark::State& state, A adapter) {
  const Index N = state.range(1);
  const Matrix<T> X = Matrix<T>::Random(N, adapter.in_features()), G = Matrix<T>::Random(N, adapter.out_features());
  Matrix<T> Y, dX;
  for (auto _ : state) {
    const Matrix<T> dW = adapter.delta_weight();
    Y.noalias() = X * dW.transpose();
    dX.noalias() = G * dW;
    benchmark::DoNotOptimize(dX.data());
  }
  state.SetItemsProcessed(state.iterations() * N);
}
void BM_DenseDelta_circulant(benchmark::State& s) { dense_delta(s, SURM<T>(s.range(0), s.range(0), {})); }
void BM_DenseDelta_C3A_b64(benchmark::State& s) {
  if (s.range(0) % 64 != 0) return s.SkipWithError("block size 64 does not divide d");
  dense_delta(s, C3A<T>(s.range(0), s.range(0), {.block_size = 64}));
}

template <class S>
void BM_FrozenBase(benchmark::State& state) { bench::run_base<S>(state); }

BENCHMARK_TEMPLATE(BM_FrozenBase, T)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_SURM, Structure::Circulant)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_SURM, Structure::CirculantSingle)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_SURM, Structure::SymToeplitz)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_SURM, Structure::Toeplitz)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_SURM, Structure::Kronecker, 8)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_SURM, Structure::LDR, 4)->Apply(shapes);
BENCHMARK(BM_C3A_b64)->Apply(shapes);
BENCHMARK(BM_SURMAdapter_circulant)->Apply(shapes);
BENCHMARK(BM_Houlsby_m64)->Apply(shapes);
BENCHMARK(BM_DenseDelta_circulant)->Apply(shapes);
BENCHMARK(BM_DenseDelta_C3A_b64)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
