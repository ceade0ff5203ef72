// peft-bench: trainable parameters and forward+backward speed of each adapter
// next to the frozen layer it wraps, for standard layer shapes. Prints a
// markdown table (or JSON with --json), optionally a parameters-vs-overhead
// plot (--svg); progress goes to stderr.
//
//   peft-bench [--d 768,4096] [--N 256] [--rounds 15] [--threads 1,2] [--base f32,bf16,int8] [--double] [--json]
//              [--svg FILE]

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <peft/peft.hpp>

#include "fma_peak.hpp"
#include "svg_scatter.hpp"
#include "timing.hpp"

namespace {

using peft::Index;

struct Options {
  std::vector<Index> dims{768, 4096};
  Index rows = 256;
  int rounds = 15;
  std::vector<Index> threads{1};
  std::vector<std::string> bases{"f32"};  // the frozen layer's weights: f32 (Linear), bf16 (LinearBF16), int8 (LinearInt8)
  std::vector<std::string> adapters;  // name prefixes to run (the frozen layer always runs); empty: all
  bool json = false;
  bool use_double = false;
  std::string svg;
};

constexpr const char* usage =
    "usage: peft-bench [--d 768,4096] [--N 256] [--rounds 15] [--threads 1,2] [--base f32,bf16,int8] [--double]\n"
    "                  [--adapters PREFIX,...] [--json] [--svg FILE]\n"
    "  --threads  threads of the dense products (Eigen's; OpenBLAS's too in peft-bench-openblas) for each run\n"
    "             (a list compares them: speedup column)\n"
    "  --base     the frozen layer's weights: f32 (peft::Linear), bf16 (peft::LinearBF16), int8 (peft::LinearInt8);\n"
    "             every adapter runs on each, timed in one run (float only)\n"
    "  --adapters only the adapters whose names start with one of these (e.g. \"LoRA r=8,IA3\")\n"
    "  --svg      also write a parameters-vs-overhead plot";

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

std::vector<Index> parse_list(const std::string& text) {
  std::vector<Index> out;
  for (const auto& item : split(text)) out.push_back(std::stol(item));
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
    else if (arg == "--threads") o.threads = parse_list(value());
    else if (arg == "--base") o.bases = split(value());
    else if (arg == "--adapters") o.adapters = split(value());
    else if (arg == "--json") o.json = true;
    else if (arg == "--double") o.use_double = true;
    else if (arg == "--svg") o.svg = value();
    else if (arg == "-h" || arg == "--help") {
      std::puts(usage);
      std::exit(0);
    } else {
      throw std::invalid_argument("peft-bench: unknown argument '" + arg + "' (try --help)");
    }
  }
  if (o.dims.empty() || o.threads.empty() || o.rows < 1 || o.rounds < 1)
    throw std::invalid_argument("peft-bench: --d, --N, --rounds and --threads need positive values");
  for (const Index t : o.threads)
    if (t < 1) throw std::invalid_argument("peft-bench: --threads needs counts >= 1");
  for (const auto& b : o.bases)
    if (b != "f32" && b != "bf16" && b != "int8")
      throw std::invalid_argument("peft-bench: --base takes f32, bf16 and int8, got '" + b + "'");
  if (o.bases.empty()) throw std::invalid_argument("peft-bench: --base needs f32, bf16 or int8");
  if (o.use_double && o.bases != std::vector<std::string>{"f32"})
    throw std::invalid_argument("peft-bench: --double runs the f64 Linear only; drop --base");
  return o;
}

/// One table row: an adapted layer (or the frozen base) and how to run it.
struct Case {
  std::string name;
  std::string base;         // "f32", "f64", "bf16": the frozen layer's weights
  std::size_t frozen = 0;   // the index of the case timing that frozen layer alone
  double weight_bytes = 0;  // the frozen layer's W
  std::string error;        // frozen rows on a rounded base: relative error of Y and dX against the first base
  Index params = 0;
  double flops = 0;
  std::function<void()> forward_backward;
  std::function<double()> held_bytes;
};

struct Result {
  std::string name, base, error;
  Index d = 0, rows = 0, params = 0, threads = 1;
  double seconds = 0, overhead = 0, gflops = 0, held_bytes = 0, speedup = 0, weight_bytes = 0;
  double vs_first_base = 1;  // frozen rows: the first base's time over this one's (a throughput ratio)
  double fma_peak = 0;       // float32 FMA GFLOP/s measured at this thread count in this run (0: unknown)
};

/// Heap bytes in use (glibc's allocator statistics; Eigen allocates through
/// malloc, so operator new hooks would miss it). 0 where unavailable.
double heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const auto info = mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd);
#else
  return 0.0;
#endif
}

/// Memory a layer keeps from forward to backward: the heap that its first
/// forward() leaves allocated (saved activations, spectra, workspaces), with
/// the output buffer allocated beforehand. Called on a fresh layer.
template <class Layer, class T>
std::function<double()> held_bytes(std::shared_ptr<Layer> layer, const peft::Matrix<T>& X, const peft::Matrix<T>& dY) {
  return [layer, &X, &dY] {
    peft::Matrix<T> Y(X.rows(), dY.cols()), dX(X.rows(), X.cols());
    const double before = heap_in_use();
    layer->forward(X, Y);
    const double after = heap_in_use();
    layer->backward(dY, dX);
    return std::max(0.0, after - before);
  };
}

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

/// The frozen layer and every adapter on it, appended to `cases`.
/// ‖Y − Y_ref‖ / ‖Y_ref‖ and the same for dX, of `layer` against the float32 `reference`.
template <class T, class Base>
std::string relative_errors(const Base& layer, const peft::Linear<T>& reference, const peft::Matrix<T>& X,
                            const peft::Matrix<T>& dY) {
  const peft::Matrix<T> Y = reference.forward(X), dX = reference.backward(dY);
  char text[64];
  std::snprintf(text, sizeof text, "Y %.1e, dX %.1e", (layer.forward(X) - Y).norm() / Y.norm(),
                (layer.backward(dY) - dX).norm() / dX.norm());
  return text;
}

template <class T, class Base>
void add_cases(std::vector<Case>& cases, const Base& base, const std::string& kind, double weight_bytes,
               std::string error, Index d, const peft::Matrix<T>& X, const peft::Matrix<T>& dY, const Options& o) {
  const std::size_t frozen_index = cases.size();
  const auto frozen = std::make_shared<Base>(base);
  cases.push_back({"frozen base", kind, frozen_index, weight_bytes, std::move(error), 0, base.flops(o.rows),
                   runner(frozen, X, dY), held_bytes(frozen, X, dY)});
  auto add = [&](std::string name, auto adapter) {
    using A = decltype(adapter);
    if (!o.adapters.empty() && std::none_of(o.adapters.begin(), o.adapters.end(),
                                            [&](const std::string& prefix) { return name.rfind(prefix, 0) == 0; }))
      return;
    if constexpr (!peft::UsesBase<A> || peft::is_dense_linear<Base, T>) {
      auto layer = std::make_shared<peft::Adapted<A, Base>>(base, std::move(adapter));
      cases.push_back({std::move(name), kind, frozen_index, weight_bytes, "", layer->adapter().num_params(),
                       layer->flops(o.rows), runner(layer, X, dY), held_bytes(layer, X, dY)});
    }  // else: an adapter that reads W itself (DoRA) needs a dense base
  };
  for (const Index r : {8, 64})
    add("LoRA r=" + std::to_string(r), peft::LoRA<T>(d, d, {.r = r, .alpha = 2.0 * r, .init = peft::LoRAInit::None}));
  // DoRA (LoRA with use_dora): the same LoRA plus the magnitude, whose norm reads W once per forward.
  add("DoRA r=8", peft::DoRA<T>(d, d, {.r = 8, .alpha = 16, .init = peft::LoRAInit::None}));
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
}

template <class T>
std::vector<Result> run_dimension(Index d, const Options& o) {
  peft::Rng rng(static_cast<std::uint64_t>(d));
  const peft::Matrix<T> X = peft::Matrix<T>::Random(o.rows, d), dY = peft::Matrix<T>::Random(o.rows, d);
  const auto base = peft::Linear<T>::random(d, d, rng);

  std::vector<Case> cases;
  for (const auto& kind : o.bases) {
    if (kind == "bf16") {
      if constexpr (std::is_same_v<T, float>) {
        const peft::LinearBF16 rounded(base);
        add_cases<T>(cases, rounded, kind, static_cast<double>(rounded.weight_bytes()),
                     relative_errors(rounded, base, X, dY), d, X, dY, o);
      }
    } else if (kind == "int8") {
      if constexpr (std::is_same_v<T, float>) {
        const peft::LinearInt8 quantised(base);
        add_cases<T>(cases, quantised, kind, static_cast<double>(quantised.weight_bytes()),
                     relative_errors(quantised, base, X, dY), d, X, dY, o);
      }
    } else {
      add_cases<T>(cases, base, sizeof(T) == 4 ? "f32" : "f64", static_cast<double>(base.weight().size() * sizeof(T)),
                   "", d, X, dY, o);
    }
  }

  std::vector<double> held;
  for (const auto& c : cases) held.push_back(c.held_bytes());  // first calls: fresh layers
  std::vector<std::function<void()>> runs;
  for (const auto& c : cases) runs.push_back(c.forward_backward);
  std::vector<Result> results;
  std::vector<double> first_medians;  // the first thread count's, for the speedup column
  for (const Index threads : o.threads) {
    peft::set_gemm_threads(static_cast<int>(threads));
    const double fma_peak = peft::bench::measured_fma_peak(static_cast<int>(threads));
    const auto timed = peft::bench::paired_medians(runs, o.rounds, 1, [&](int round) {
      std::fprintf(stderr, "\rpeft-bench: d = %ld, N = %ld, %ld thread(s): round %d/%d ", static_cast<long>(d),
                   static_cast<long>(o.rows), static_cast<long>(threads), round, o.rounds);
    });
    std::fprintf(stderr, "\n");
    const auto& medians = timed.medians;
    if (first_medians.empty()) first_medians = medians;
    // Ratios are to the first case (the first base alone); each row's overhead
    // is to its own frozen layer, a ratio of those ratios.
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      results.push_back({c.name, c.base, c.error, d, o.rows, c.params, threads, medians[i],
                         timed.ratios[i] / timed.ratios[c.frozen] - 1.0, c.flops / medians[i] * 1e-9, held[i],
                         first_medians[i] / medians[i], c.weight_bytes, 1.0 / timed.ratios[c.frozen], fma_peak});
    }
  }
  peft::set_gemm_threads(static_cast<int>(o.threads.front()));  // what the table's header reports
  return results;
}

std::string mebibytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", bytes / (1024.0 * 1024.0));
  return text;
}

void print_markdown(const std::vector<Result>& results, const Options& o) {
  const bool compare_threads = o.threads.size() > 1;
  std::printf("peft-bench: forward+backward of one d x d layer, N = %ld rows, %s, median of %d rounds; overhead: "
              "median ratio to the frozen layer timed right before it\n",
              static_cast<long>(o.rows), o.use_double ? "double" : "float", o.rounds);
  std::printf("machine: %s\n", peft::bench::machine_description().c_str());
  std::printf("memory held: heap left allocated by the first forward() until backward() (activations, spectra, "
              "workspaces)\n");
  std::printf("GFLOP/s: matrix-product flops per second; the frozen float32 rows add their share of the float32 FMA "
              "peak measured in this run (");
  for (std::size_t i = 0; i < o.threads.size(); ++i) {
    const auto it = std::find_if(results.begin(), results.end(), [&](const Result& r) { return r.threads == o.threads[i]; });
    std::printf("%s%.1f GFLOP/s on %ld thread(s)", i ? ", " : "", it == results.end() ? 0.0 : it->fma_peak,
                static_cast<long>(o.threads[i]));
  }
  std::printf(")\n\n");
  const bool compare_bases = o.bases.size() > 1;
  if (compare_bases)
    std::printf("base: the frozen layer's weights (f32: peft::Linear, bf16: peft::LinearBF16, int8: "
                "peft::LinearInt8); overhead is to the "
                "frozen layer on the same base; \"vs %s base\": the %s frozen layer's time over this base's; "
                "error: a rounded frozen layer's ||Y - Y_f32|| / ||Y_f32|| and the same for dX\n\n",
                o.bases.front().c_str(), o.bases.front().c_str());
  std::printf("| adapter |%s d |%s trainable params | params / LoRA r=8 | fwd+bwd ms | overhead vs frozen | GFLOP/s |%s "
              "weights MiB | memory held MiB |%s\n",
              compare_bases ? " base |" : "", compare_threads ? " threads |" : "",
              compare_bases ? (" vs " + o.bases.front() + " base | error |").c_str() : "",
              compare_threads ? " speedup vs 1st |" : "");
  std::printf("|---|%s---:|%s---:|---:|---:|---:|---:|%s---:|---:|%s\n", compare_bases ? "---|" : "",
              compare_threads ? "---:|" : "", compare_bases ? "---:|---|" : "", compare_threads ? "---:|" : "");
  for (const auto& r : results) {
    const double lora8 = 8.0 * 2.0 * static_cast<double>(r.d);  // r (d_in + d_out) at r = 8
    char ratio[32] = "-", overhead[32] = "-";
    if (r.params) {
      std::snprintf(ratio, sizeof ratio, "%.2fx", static_cast<double>(r.params) / lora8);
      std::snprintf(overhead, sizeof overhead, "%+.1f%%", 100.0 * r.overhead);
    }
    char threads[32] = "", speedup[32] = "";
    if (compare_threads) {
      std::snprintf(threads, sizeof threads, " %ld |", static_cast<long>(r.threads));
      std::snprintf(speedup, sizeof speedup, " %.2fx |", r.speedup);
    }
    char base[32] = "", vs_base[96] = "";
    if (compare_bases) {
      std::snprintf(base, sizeof base, " %s |", r.base.c_str());
      if (r.params) std::snprintf(vs_base, sizeof vs_base, " - | |");
      else std::snprintf(vs_base, sizeof vs_base, " %.2fx | %s |", r.vs_first_base, r.error.c_str());
    }
    char gflops[48];
    if (r.params == 0 && r.base == "f32" && r.fma_peak > 0)
      std::snprintf(gflops, sizeof gflops, "%.1f (%.0f%% of peak)", r.gflops, 100.0 * r.gflops / r.fma_peak);
    else
      std::snprintf(gflops, sizeof gflops, "%.1f", r.gflops);
    std::printf("| %s |%s %ld |%s %ld | %s | %.3f | %s | %s |%s %s | %s |%s\n", r.name.c_str(), base,
                static_cast<long>(r.d), threads, static_cast<long>(r.params), ratio, r.seconds * 1e3, overhead,
                gflops, vs_base, mebibytes(r.weight_bytes).c_str(), mebibytes(r.held_bytes).c_str(), speedup);
  }
}

/// Parameters vs overhead, one point per adapter (first thread count only).
void write_svg(const std::vector<Result>& results, const Options& o) {
  std::vector<peft::bench::ScatterPoint> points;
  const char* colors[] = {"#2471a3", "#c0392b", "#1e8449", "#7d3c98"};
  for (std::size_t k = 0; k < o.dims.size(); ++k)
    for (const auto& r : results)
      if (r.params && r.d == o.dims[k] && r.threads == o.threads.front() && r.base == results.front().base)
        points.push_back({r.name + " (d=" + std::to_string(r.d) + ")", static_cast<double>(r.params),
                          100.0 * r.overhead, colors[k % 4]});
  const std::string title = "peft-bench: trainable parameters vs forward+backward overhead, N = " +
                            std::to_string(o.rows) + ", " + (o.use_double ? "double" : "float");
  std::ofstream file(o.svg);
  file << peft::bench::scatter_svg(points, {.title = title,
                                            .x_label = "trainable parameters",
                                            .y_label = "overhead over the frozen layer",
                                            .y_unit = "%"});
  if (!file) throw std::runtime_error("peft-bench: could not write " + o.svg);
}

void print_json(const std::vector<Result>& results, const Options& o) {
  nlohmann::ordered_json out;
  out["machine"] = peft::bench::machine_description();
  out["precision"] = o.use_double ? "double" : "float";
  out["rounds"] = o.rounds;
  for (const auto& r : results)
    out["results"].push_back({{"adapter", r.name},
                              {"base", r.base},
                              {"d", r.d},
                              {"N", r.rows},
                              {"threads", r.threads},
                              {"params", r.params},
                              {"seconds", r.seconds},
                              {"overhead", r.overhead},
                              {"gflops", r.gflops},
                              {"fma_peak_gflops", r.fma_peak},
                              {"held_bytes", r.held_bytes},
                              {"weight_bytes", r.weight_bytes},
                              {"frozen_vs_first_base", r.vs_first_base},
                              {"error_vs_f32", r.error},
                              {"speedup_vs_first_threads", r.speedup}});
  std::cout << out.dump(2) << '\n';
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  std::vector<Result> results;
  for (const Index d : o.dims) {
    auto part = o.use_double ? run_dimension<double>(d, o) : run_dimension<float>(d, o);
    results.insert(results.end(), part.begin(), part.end());
  }
  if (o.json) print_json(results, o);
  else print_markdown(results, o);
  if (!o.svg.empty()) write_svg(results, o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
