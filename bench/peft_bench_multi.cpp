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
//
// A second table serves the same mixed batches for inference: the training
// forward in eval mode against infer() (const, keeps nothing, safe on several
// threads at once), both forward only, and the memory each leaves behind:
// held by the layer after the call (activations and scratch for backward),
// and infer's per-thread working memory (freed with the thread), measured
// by counting live heap bytes around one cold call on a new thread.

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <peft/adapters/lora.hpp>
#include <peft/adapters/surm.hpp>
#include <peft/core/multi_adapted.hpp>

#include "timing.hpp"

// Live heap bytes, for the memory columns: glibc's allocator wrapped, so
// Eigen's buffers (std::malloc) count as well as operator new's.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}
namespace {
std::atomic<long long> g_live_bytes{0};
void* counted(void* p) {
  if (p != nullptr) g_live_bytes += static_cast<long long>(malloc_usable_size(p));
  return p;
}
void uncount(void* p) {
  if (p != nullptr) g_live_bytes -= static_cast<long long>(malloc_usable_size(p));
}
}  // namespace
extern "C" {
void* malloc(std::size_t size) { return counted(__libc_malloc(size)); }
void* calloc(std::size_t n, std::size_t size) { return counted(__libc_calloc(n, size)); }
void* realloc(void* p, std::size_t size) {
  const long long before = p != nullptr ? static_cast<long long>(malloc_usable_size(p)) : 0;
  void* q = __libc_realloc(p, size);
  if (q == nullptr && size != 0) return nullptr;  // p is still live, still counted
  g_live_bytes -= before;
  return counted(q);
}
void free(void* p) {
  uncount(p);
  __libc_free(p);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) { return counted(__libc_memalign(alignment, size)); }
void* memalign(std::size_t alignment, std::size_t size) { return counted(__libc_memalign(alignment, size)); }
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  *out = counted(__libc_memalign(alignment, size));
  return *out == nullptr ? ENOMEM : 0;
}
}

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

/// Heap bytes one cold `call` on a new thread leaves behind: {held by the
/// layer after it, the thread's working memory (freed when the thread ends)}.
template <class Call>
std::pair<double, double> megabytes_of(Call&& call) {
  const long long before = g_live_bytes;
  long long during = 0;
  std::thread([&] {
    const long long start = g_live_bytes;
    call();
    during = g_live_bytes - start;
  }).join();
  const long long held = g_live_bytes - before;
  return {static_cast<double>(held) / 1e6, static_cast<double>(during - held) / 1e6};
}

template <class Make>
void inference_row(const char* kind, const Options& o, Make make) {
  peft::Rng rng(7);
  peft::MultiAdapted<float> layer(peft::Linear<float>::random(o.d, o.d, rng));
  for (int a = 0; a < o.adapters; ++a) layer.add_adapter(std::string(kind) + " " + std::to_string(a), randomized(make(), rng));
  layer.set_training(false);
  const auto& frozen = layer;
  const peft::Matrix<float> X = peft::Matrix<float>::Random(o.rows, o.d);
  peft::Matrix<float> Y(o.rows, o.d);
  std::vector<int> interleaved(static_cast<std::size_t>(o.rows));
  for (Index i = 0; i < o.rows; ++i) interleaved[static_cast<std::size_t>(i)] = static_cast<int>(i % o.adapters);
  const auto [infer_held, infer_thread] = megabytes_of([&] { frozen.infer(X, interleaved, Y); });
  const auto [forward_held, forward_thread] = megabytes_of([&] { layer.forward(X, interleaved, Y); });
  (void)forward_thread;
  const auto t = peft::bench::paired_medians({[&] { frozen.base().forward(X, Y); },
                                              [&] { layer.forward(X, interleaved, Y); },
                                              [&] { frozen.infer(X, interleaved, Y); }},
                                             o.rounds);
  std::printf("| %s | %.2f | %.1f%% | %.1f%% (%.2fx) | %.2f | %.2f | %.2f |\n", kind, t.medians[0] * 1e3,
              100 * (t.ratios[1] - 1), 100 * (t.ratios[2] - 1), (t.ratios[2] - 1) / (t.ratios[1] - 1), forward_held,
              infer_held, infer_thread);
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

    std::printf("\nInference: the same layer in eval mode, rows interleaved over %d adapters, forward only\n\n"
                "| adapters | frozen layer ms | forward: overhead | infer: overhead (vs forward) | held after forward "
                "MB | held after infer MB | infer's per-thread MB |\n|---|---:|---:|---:|---:|---:|---:|\n",
                o.adapters);
    inference_row("LoRA r=8", o, [&] { return peft::LoRA<float>(o.d, o.d, {.r = 8, .alpha = 16}); });
    inference_row("SURM circulant", o,
                  [&] { return peft::SURM<float>(o.d, o.d, {.structure = peft::Structure::Circulant}); });
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
