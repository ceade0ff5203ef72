#pragma once
// The CPU's float32 FMA rate as measured here: what the frozen-layer rows'
// "share of the peak" divides by. Each thread runs 12 independent chains of
// vector FMAs, more than the FMA latency times the FMA ports of current x86
// cores, so the loop runs at the units' throughput, not their latency.

#include <algorithm>
#include <chrono>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace peft::bench {

namespace detail {

/// Flops of `iterations` rounds of 12 vector FMAs on this thread; 0 without FMA instructions in the build.
inline double fma_chains(long iterations) {
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int lanes = 16;
  const auto fma = [](V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); };
  const auto set = [](float x) { return _mm512_set1_ps(x); };
  const auto sum = [](V a) { return _mm512_reduce_add_ps(a); };
#elif defined(__FMA__)
  using V = __m256;
  constexpr int lanes = 8;
  const auto fma = [](V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); };
  const auto set = [](float x) { return _mm256_set1_ps(x); };
  const auto sum = [](V a) {
    alignas(32) float v[8];
    _mm256_store_ps(v, a);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
  };
#endif
#if defined(__AVX512F__) || defined(__FMA__)
  V acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = set(1.0f + 1e-3f * static_cast<float>(i));
  const V scale = set(0.9999999f), shift = set(1e-7f);
  for (long k = 0; k < iterations; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = fma(acc[i], scale, shift);
  float total = 0;
  for (int i = 0; i < 12; ++i) total += sum(acc[i]);
  volatile float sink = total;  // keeps the chains from being optimised away
  (void)sink;
  return 2.0 * lanes * 12.0 * static_cast<double>(iterations);
#else
  (void)iterations;
  return 0.0;
#endif
}

}  // namespace detail

/// GFLOP/s of float32 FMAs on `threads` threads (OpenMP; without it, one
/// thread whatever `threads` says),
/// best of three ~50 ms runs. 0 when the build has no FMA instructions
/// (benchmarks build with -march=native, which has them on x86-64 since Haswell).
inline double measured_fma_peak(int threads) {
  constexpr long kIterations = 1L << 24;
  double best = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    double flops = 0;
    const auto start = std::chrono::steady_clock::now();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += detail::fma_chains(kIterations);
#else
    (void)threads;
    flops = detail::fma_chains(kIterations);
#endif
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / seconds * 1e-9);
  }
  return best;
}

}  // namespace peft::bench
