// peft-bench: trainable parameters and forward+backward speed of each adapter
// next to the frozen layer it wraps, for standard layer shapes. Prints a
// markdown table (or JSON with --json); progress goes to stderr.
//
//   peft-bench [--d 768,4096] [--N 256] [--rounds 15] [--double] [--json]

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <peft/peft.hpp>

#include "timing.hpp"

namespace {

using peft::Index;

struct Options {
  std::vector<Index> dims{768, 4096};
  Index rows = 256;
  int rounds = 15;
  bool json = false;
  bool use_double = false;
};

std::vector<Index> parse_list(const std::string& text) {
  std::vector<Index> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stol(item));
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("peft-bench: " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--d") o.dims = parse_list(value());
    else if (arg == "--N") o.rows = std::stol(value());
    else if (arg == "--rounds") o.rounds = std::stoi(value());
    else if (arg == "--json") o.json = true;
    else if (arg == "--double") o.use_double = true;
    else if (arg == "-h" || arg == "--help") {
      std::puts("usage: peft-bench [--d 768,4096] [--N 256] [--rounds 15] [--double] [--json]");
      std::exit(0);
    } else {
      throw std::invalid_argument("peft-bench: unknown argument '" + arg + "' (try --help)");
    }
  }
  return o;
}

/// One table row: an adapted layer (or the frozen base) and how to run it.
struct Case {
  std::string name;
  Index params = 0;
  double flops = 0;
  std::function<void()> forward_backward;
};

struct Result {
  std::string name;
  Index d = 0, rows = 0, params = 0;
  double seconds = 0, overhead = 0, gflops = 0;
};

template <class Layer, class T>
std::function<void()> runner(std::shared_ptr<Layer> layer, const peft::Matrix<T>& X, const peft::Matrix<T>& dY) {
  // Fresh inputs each run: Eigen's GEMM speed depends on where buffers land,
  // so each sample sees a new placement and the median averages it out.
  return [layer, &X, &dY] {
    const peft::Matrix<T> x = X, dy = dY;
    peft::Matrix<T> Y, dX;
    layer->forward(x, Y);
    layer->backward(dy, dX);
  };
}

template <class T>
std::vector<Result> run_dimension(Index d, const Options& o) {
  peft::Rng rng(static_cast<std::uint64_t>(d));
  const peft::Matrix<T> X = peft::Matrix<T>::Random(o.rows, d), dY = peft::Matrix<T>::Random(o.rows, d);
  const auto base = peft::Linear<T>::random(d, d, rng);

  std::vector<Case> cases;
  cases.push_back({"frozen base", 0, base.flops(o.rows), runner(std::make_shared<peft::Linear<T>>(base), X, dY)});
  auto add = [&](std::string name, auto adapter) {
    using A = decltype(adapter);
    auto layer = std::make_shared<peft::Adapted<A>>(base, std::move(adapter));
    cases.push_back({std::move(name), layer->adapter().num_params(), layer->flops(o.rows), runner(layer, X, dY)});
  };
  for (const Index r : {8, 64})
    add("LoRA r=" + std::to_string(r), peft::LoRA<T>(d, d, {.r = r, .alpha = 2.0 * r, .init = peft::LoRAInit::None}));
  add("MELoRA r=8 n=2", peft::MELoRA<T>(d, d, {.r = 8, .n = 2, .init = peft::LoRAInit::None}));
  add("LoKr r=8", peft::LoKr<T>(d, d, {.r = 8, .init = peft::LoKrInit::Random}));
  // One factor set for a 12-layer model (q, k, v, o; 64-wide heads): its
  // parameters are the whole model's, shared by 48 layers.
  add("LoRTA r=8 (shared by 48 layers)",
      peft::LoRTA<T>(std::make_shared<peft::LoRTAFactors<T>>(
                         peft::LoRTAConfig{.r = 8, .d = d, .heads = std::max<Index>(1, d / 64), .layers = 12}),
                     0, 0));
  add("SURM circulant", peft::SURM<T>(d, d, {.structure = peft::Structure::Circulant}));
  add("SURM symmetric Toeplitz", peft::SURM<T>(d, d, {.structure = peft::Structure::SymToeplitz}));
  add("SURM Toeplitz", peft::SURM<T>(d, d, {.structure = peft::Structure::Toeplitz}));
  add("SURM LDR rho=4", peft::SURM<T>(d, d, {.structure = peft::Structure::LDR, .rank = 4}));
  add("C3A b=64", peft::C3A<T>(d, d, {.block_size = 64}));
  add("SURM adapter circulant", peft::SURMAdapter<T>(d, d, {.structure = peft::Structure::Circulant}));
  add("Houlsby adapter m=64", peft::Houlsby<T>(d, d, {.bottleneck = 64}));
  add("RED", peft::RED<T>(d, d));
  add("IA3", peft::IA3<T>(d, d));
  add("IA3 feed-forward", peft::IA3<T>(d, d, {.feedforward = true}));

  std::vector<std::function<void()>> runs;
  for (const auto& c : cases) runs.push_back(c.forward_backward);
  const auto medians = peft::bench::interleaved_medians(runs, o.rounds);
  std::vector<Result> results;
  for (std::size_t i = 0; i < cases.size(); ++i)
    results.push_back({cases[i].name, d, o.rows, cases[i].params, medians[i], medians[i] / medians[0] - 1.0,
                       cases[i].flops / medians[i] * 1e-9});
  return results;
}

void print_markdown(const std::vector<Result>& results, const Options& o) {
  std::printf("peft-bench: forward+backward of one d x d layer, N = %ld rows, %s, median of %d interleaved rounds\n",
              static_cast<long>(o.rows), o.use_double ? "double" : "float", o.rounds);
  std::printf("machine: %s\n\n", peft::bench::machine_description().c_str());
  std::printf("| adapter | d | trainable params | params / LoRA r=8 | fwd+bwd ms | overhead vs frozen | GFLOP/s |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    const double lora8 = 8.0 * 2.0 * static_cast<double>(r.d);  // r (d_in + d_out) at r = 8
    char ratio[32] = "-", overhead[32] = "-";
    if (r.params) {
      std::snprintf(ratio, sizeof ratio, "%.2fx", static_cast<double>(r.params) / lora8);
      std::snprintf(overhead, sizeof overhead, "%+.1f%%", 100.0 * r.overhead);
    }
    std::printf("| %s | %ld | %ld | %s | %.3f | %s | %.1f |\n", r.name.c_str(), static_cast<long>(r.d),
                static_cast<long>(r.params), ratio, r.seconds * 1e3, overhead, r.gflops);
  }
}

void print_json(const std::vector<Result>& results, const Options& o) {
  nlohmann::ordered_json out;
  out["machine"] = peft::bench::machine_description();
  out["precision"] = o.use_double ? "double" : "float";
  out["rounds"] = o.rounds;
  for (const auto& r : results)
    out["results"].push_back({{"adapter", r.name},
                              {"d", r.d},
                              {"N", r.rows},
                              {"params", r.params},
                              {"seconds", r.seconds},
                              {"overhead", r.overhead},
                              {"gflops", r.gflops}});
  std::cout << out.dump(2) << '\n';
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  std::vector<Result> results;
  for (const Index d : o.dims) {
    std::fprintf(stderr, "peft-bench: d = %ld, N = %ld ...\n", static_cast<long>(d), static_cast<long>(o.rows));
    auto part = o.use_double ? run_dimension<double>(d, o) : run_dimension<float>(d, o);
    results.insert(results.end(), part.begin(), part.end());
  }
  if (o.json) print_json(results, o);
  else print_markdown(results, o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
