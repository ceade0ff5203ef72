#pragma once
// Timing helpers shared by the benchmarks. The machines are shared and noisy,
// so cases are timed interleaved (round-robin) and summarised by medians, and
// overheads are ratios of medians taken in the same run.

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <peft/core/gemm_backend.hpp>

#include <Eigen/Core>

namespace peft::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double seconds_of(const std::function<void()>& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Medians of `cases` over `rounds` rounds (after `warmup` untimed ones), with
/// cases[0] (the reference, e.g. the frozen layer) timed again right before
/// every other case: each case's ratio to the reference is the median of those
/// adjacent pairs, which cancels the slow drift a shared machine adds to both.
/// Each round starts one case later, so no case always follows the same
/// neighbour. `on_round(k)` is called before timed round k (1-based).
struct PairedTimes {
  std::vector<double> medians;  // seconds, per case (the reference: all its samples)
  std::vector<double> ratios;   // median of t_case / t_reference over adjacent pairs (1 for the reference)
};

inline PairedTimes paired_medians(const std::vector<std::function<void()>>& cases, int rounds, int warmup = 1,
                                  const std::function<void(int)>& on_round = {}) {
  std::vector<std::vector<double>> samples(cases.size()), ratios(cases.size());
  const std::size_t others = cases.size() - 1;
  for (int round = -warmup; round < rounds; ++round) {
    if (round >= 0 && on_round) on_round(round + 1);
    for (std::size_t i = 0; i < others; ++i) {
      const std::size_t c = 1 + (i + static_cast<std::size_t>(round + warmup)) % others;
      const double reference = seconds_of(cases[0]), t = seconds_of(cases[c]);
      if (round < 0) continue;
      samples[0].push_back(reference);
      samples[c].push_back(t);
      ratios[c].push_back(t / reference);
    }
  }
  PairedTimes out;
  for (std::size_t c = 0; c < cases.size(); ++c) {
    out.medians.push_back(median(samples[c]));
    out.ratios.push_back(c == 0 ? 1.0 : median(ratios[c]));
  }
  return out;
}

/// "AMD EPYC ... (avx512)" style description of where the numbers come from.
inline std::string machine_description() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  const peft::GemmBackend gemm = peft::gemm_backend();
  std::string s = model + "; Eigen SIMD: " + Eigen::SimdInstructionSetsInUse() + "; Eigen threads: " +
                  std::to_string(Eigen::nbThreads()) + "; GEMM: " + gemm.name;
  if (gemm.name != "Eigen") s += " (" + gemm.details + ", " + std::to_string(gemm.threads) + " threads)";
  if (gemm.linear.rfind(gemm.name, 0) != 0) s += "; frozen float32 layer: " + gemm.linear;
  s += "; bf16 products: " + gemm.bf16;
  if (!gemm.warning.empty()) s += "; WARNING: " + gemm.warning;
  return s;
}

}  // namespace peft::bench
