// peft-bench-multi: what a mixed batch costs on MultiAdapted. One d x d
// layer, N rows, forward + backward, timed interleaved against the frozen
// layer alone:
//
//   peft-bench-multi [--d 4096] [--N 256] [--adapters 8] [--rounds 15] [--threads 1]
//
// Per adapter kind (LoRA r=8, circulant SURM): one adapter on the whole batch
// (the overhead a single-adapter layer has), and the batch spread over
// --adapters adapters of that kind, rows interleaved (row i to adapter i mod
// k: each adapter's rows gathered) and sorted (each adapter's rows one block,
// used in place). The last column is the mixed batch's overhead over the
// single adapter's (the target: at most 1.5).

#include <cstdio>
#include <iostream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <peft/adapters/lora.hpp>
#include <peft/adapters/surm.hpp>
#include <peft/core/multi_adapted.hpp>

#include "timing.hpp"

namespace {

using peft::Index;

struct Options {
  Index d = 4096, rows = 256;
  int adapters = 8, rounds = 15, threads = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("peft-bench-multi: " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--d") o.d = std::stol(value());
    else if (arg == "--N") o.rows = std::stol(value());
    else if (arg == "--adapters") o.adapters = std::stoi(value());
    else if (arg == "--rounds") o.rounds = std::stoi(value());
    else if (arg == "--threads") o.threads = std::stoi(value());
    else throw std::invalid_argument("peft-bench-multi: unknown argument '" + arg + "'");
  }
  if (o.d < 1 || o.rows < 1 || o.adapters < 1 || o.rounds < 1 || o.threads < 1)
    throw std::invalid_argument("peft-bench-multi: --d, --N, --adapters, --rounds, --threads need positive values");
  return o;
}

/// Trained-looking values (LoRA's B and SURM's kernel start at zero).
template <class A>
A randomized(A adapter, peft::Rng& rng) {
  for (auto& p : adapter.parameters())
    for (Index i = 0; i < p.value.size(); ++i) p.value.data()[i] = static_cast<float>(rng.uniform(-0.01, 0.01));
  return adapter;
}

template <class Make>
void row(const char* kind, const Options& o, Make make) {
  peft::Rng rng(7);
  peft::MultiAdapted<float> layer(peft::Linear<float>::random(o.d, o.d, rng));
  std::vector<std::string> names;
  for (int a = 0; a < o.adapters; ++a) {
    names.push_back(std::string(kind) + " " + std::to_string(a));
    layer.add_adapter(names.back(), randomized(make(), rng));
  }
  const peft::Matrix<float> X = peft::Matrix<float>::Random(o.rows, o.d), dY = peft::Matrix<float>::Random(o.rows, o.d);
  peft::Matrix<float> Y, dX;
  std::vector<int> interleaved(static_cast<std::size_t>(o.rows)), sorted(interleaved.size());
  for (Index i = 0; i < o.rows; ++i) {
    interleaved[static_cast<std::size_t>(i)] = static_cast<int>(i % o.adapters);
    sorted[static_cast<std::size_t>(i)] = static_cast<int>(i * o.adapters / o.rows);
  }
  auto step = [&] {
    layer.forward(X, Y);
    layer.backward(dY, dX);
  };
  auto mixed = [&](const std::vector<int>& rows) {
    layer.forward(X, rows, Y);
    layer.backward(dY, dX);
  };
  const auto t = peft::bench::paired_medians(
      {[&] {
         layer.set_adapter(std::vector<std::string>{});
         step();
       },
       [&] {
         layer.set_adapter(names.front());
         step();
       },
       [&] { mixed(interleaved); }, [&] { mixed(sorted); }},
      o.rounds);
  const double single = t.ratios[1] - 1, spread = t.ratios[2] - 1, blocks = t.ratios[3] - 1;
  std::printf("| %s | %.2f | %.1f%% | %.1f%% (%.2fx) | %.1f%% (%.2fx) |\n", kind, t.medians[0] * 1e3, 100 * single,
              100 * spread, spread / single, 100 * blocks, blocks / single);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    peft::set_gemm_threads(o.threads);
    std::printf("%s\n\none %ld x %ld layer, N = %ld rows, forward + backward, %d adapters, median of %d\n\n",
                peft::bench::machine_description().c_str(), static_cast<long>(o.d), static_cast<long>(o.d),
                static_cast<long>(o.rows), o.adapters, o.rounds);
    std::printf("| adapters | frozen layer ms | one adapter, all rows: overhead | %d adapters, rows interleaved: "
                "overhead (vs one) | %d adapters, rows sorted: overhead (vs one) |\n|---|---:|---:|---:|---:|\n",
                o.adapters, o.adapters);
    row("LoRA r=8", o, [&] { return peft::LoRA<float>(o.d, o.d, {.r = 8, .alpha = 16}); });
    row("SURM circulant", o, [&] { return peft::SURM<float>(o.d, o.d, {.structure = peft::Structure::Circulant}); });
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
