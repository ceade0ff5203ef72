// peft-bench-dist: what data-parallel training costs in communication, and
// a scaling model built on it. Run on 2 or more ranks:
//
//   mpirun -np 2 peft-bench-dist [--d 4096] [--N 256] [--global-rows 32768] [--rounds 15]
//                                [--net-latency-us 5] [--net-gbps 100] [--rank-speedup 1]
//                                [--overlap-layers 8] [--overlap-d 1024]
//
// 1. Times GradientAverager::all() (one MPI_Allreduce of float gradients)
//    between the ranks for sizes from 1 Ki to 16 Mi floats; the smallest
//    gives the latency, the largest the bandwidth of this machine's link.
// 2. Times one rank's forward + backward of a d x d layer with LoRA r=8, and
//    of the same layer fully fine-tuned (its weight gradient, N·d² more
//    multiply-adds), on N rows.
// 3. Prints the time per step for a LLaMA-7B-sized stack (32 layers x 4
//    adapted d x d matrices, a global batch of --global-rows rows split over
//    P ranks) for P = 1 … 1,024: compute/P + ring all-reduce of the
//    gradients, 2(P−1)/P · bytes / bandwidth + 2(P−1) · latency, with the
//    link measured here and with a network link (--net-latency-us,
//    --net-gbps), and the P from which communication takes longer than
//    compute, for LoRA and for full fine-tuning. A rank is one core of this
//    machine; --rank-speedup S models ranks S times faster (a many-core node).
// 4. Overlap: a stack of --overlap-layers layers of --overlap-d, LoRA r=8 and
//    fully fine-tuned, one training step's forward + backward with the
//    gradients not averaged (compute alone), averaged by all() after the
//    whole backward, and averaged per layer by start(g) as each layer's
//    backward ends, then finish(). How much of the all-reduce the per-layer
//    start hides depends on the MPI library's asynchronous progress (Open MPI
//    without a progress thread advances it only inside MPI calls; MPICH with
//    MPIR_CVAR_ASYNC_PROGRESS=1 runs a thread) and on a spare core for it.

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <peft/adapters/full.hpp>
#include <peft/adapters/lora.hpp>
#include <peft/core/adapted.hpp>
#include <peft/dist/data_parallel.hpp>

#include "timing.hpp"

namespace {

using peft::Index;

struct Options {
  Index d = 4096, rows = 256, global_rows = 32768;
  int rounds = 15;
  double net_latency_us = 5, net_gbps = 100, rank_speedup = 1;
  Index overlap_layers = 8, overlap_d = 1024;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("peft-bench-dist: " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--d") o.d = std::stol(value());
    else if (arg == "--N") o.rows = std::stol(value());
    else if (arg == "--rounds") o.rounds = std::stoi(value());
    else if (arg == "--net-latency-us") o.net_latency_us = std::stod(value());
    else if (arg == "--net-gbps") o.net_gbps = std::stod(value());
    else if (arg == "--global-rows") o.global_rows = std::stol(value());
    else if (arg == "--rank-speedup") o.rank_speedup = std::stod(value());
    else if (arg == "--overlap-layers") o.overlap_layers = std::stol(value());
    else if (arg == "--overlap-d") o.overlap_d = std::stol(value());
    else throw std::invalid_argument("peft-bench-dist: unknown argument '" + arg + "'");
  }
  if (o.d < 1 || o.rows < 1 || o.global_rows < 1 || o.rounds < 1 || o.net_latency_us < 0 || o.net_gbps <= 0 ||
      o.rank_speedup <= 0 || o.overlap_layers < 1 || o.overlap_d < 1)
    throw std::invalid_argument("peft-bench-dist: --d, --N, --global-rows, --rounds, --net-gbps, --rank-speedup, "
                                "--overlap-layers, --overlap-d need positive values");
  return o;
}

/// Median seconds of averaging `count` float gradients across the ranks.
double allreduce_seconds(Index count, int rounds) {
  peft::ParameterBlock<float> block;  // one tensor of `count` entries
  block.add("g", {count});
  block.grads().setOnes();
  peft::dist::GradientAverager<float> average({block.views()});
  std::vector<double> samples;
  for (int r = -2; r < rounds; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t = peft::bench::seconds_of([&] { average.all(); });
    if (r >= 0) samples.push_back(t);
  }
  double median = peft::bench::median(samples);
  MPI_Allreduce(MPI_IN_PLACE, &median, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);  // the slowest rank's
  return median;
}

/// Median seconds of one forward + backward of `layer` on N rows.
template <class Layer>
double step_seconds(Layer& layer, Index rows, int rounds) {
  const peft::Matrix<float> X = peft::Matrix<float>::Random(rows, layer.in_features());
  const peft::Matrix<float> dY = peft::Matrix<float>::Random(rows, layer.out_features());
  peft::Matrix<float> Y, dX;
  std::vector<double> samples;
  for (int r = -1; r < rounds; ++r) {
    const double t = peft::bench::seconds_of([&] {
      layer.forward(X, Y);
      layer.backward(dY, dX);
    });
    if (r >= 0) samples.push_back(t);
  }
  return peft::bench::median(samples);
}

enum class Averaging { none, after_backward, per_layer };

/// Median seconds (the slowest rank's) of one forward + backward through
/// `stack` on N rows, the gradients averaged as `how` says.
template <class Layer>
double stack_step_seconds(std::vector<Layer>& stack, Index rows, Averaging how, int rounds) {
  const auto layers = stack.size();
  std::vector<std::vector<peft::Parameter<float>>> groups;  // in backward order: last layer first
  for (auto l = layers; l-- > 0;) groups.push_back(stack[l].parameters());
  peft::dist::GradientAverager<float> average(groups);
  std::vector<peft::Matrix<float>> activations(layers + 1);
  activations[0] = peft::Matrix<float>::Random(rows, stack.front().in_features());
  peft::Matrix<float> dY = peft::Matrix<float>::Random(rows, stack.back().out_features()), dX;
  std::vector<double> samples;
  for (int r = -2; r < rounds; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t = peft::bench::seconds_of([&] {
      for (std::size_t l = 0; l < layers; ++l) stack[l].forward(activations[l], activations[l + 1]);
      for (auto l = layers; l-- > 0;) {
        stack[l].backward(dY, dX);
        if (how == Averaging::per_layer) average.start(layers - 1 - l);
        std::swap(dY, dX);
      }
      if (how == Averaging::after_backward) average.all();
      if (how == Averaging::per_layer) average.finish();
    });
    if (r >= 0) samples.push_back(t);
    dY.setRandom();
  }
  double median = peft::bench::median(samples);
  MPI_Allreduce(MPI_IN_PLACE, &median, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return median;
}

struct Link {
  double latency, bytes_per_second;
};

/// Ring all-reduce of `bytes` over P ranks.
double ring_allreduce(const Link& link, double bytes, double P) {
  if (P <= 1) return 0;
  return 2 * (P - 1) * link.latency + 2 * (P - 1) / P * bytes / link.bytes_per_second;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int code = 0;
  try {
    const Options o = parse(argc, argv);
    const int rank = peft::dist::rank(), ranks = peft::dist::size();
    if (ranks < 2) throw std::invalid_argument("peft-bench-dist: run it on 2 or more ranks (mpirun -np 2 ...)");
    peft::set_gemm_threads(1);

    // 1. The link between these ranks.
    std::vector<std::pair<Index, double>> measured;
    for (Index count = 1024; count <= (Index{1} << 24); count *= 4) measured.emplace_back(count, allreduce_seconds(count, o.rounds));
    // Latency from the smallest message, bandwidth from the largest, as a
    // ring of these P ranks would see them: 2(P−1) hops, 2(P−1)/P of the bytes per link.
    const double P_here = ranks, hops = 2 * (P_here - 1), share = 2 * (P_here - 1) / P_here;
    const double alpha = measured.front().second, largest = 4.0 * static_cast<double>(measured.back().first);
    const Link here{alpha / hops, share * largest / std::max(1e-12, measured.back().second - alpha)};
    const Link network{o.net_latency_us * 1e-6, o.net_gbps * 1e9 / 8};

    // 2. One rank's compute for one d x d layer and N rows.
    peft::Rng rng(1);
    peft::Adapted<peft::LoRA<float>> lora(peft::Linear<float>::random(o.d, o.d, rng),
                                          peft::LoRA<float>(o.d, o.d, {.r = 8, .alpha = 16, .init = peft::LoRAInit::None}));
    peft::Adapted<peft::Full<float>> full(peft::Linear<float>::random(o.d, o.d, rng), peft::Full<float>(o.d, o.d));
    const double lora_step = step_seconds(lora, o.rows, o.rounds), full_step = step_seconds(full, o.rows, o.rounds);
    const double lora_bytes = 4.0 * static_cast<double>(lora.num_params()), full_bytes = 4.0 * static_cast<double>(full.num_params());

    if (rank == 0) {
      std::printf("%s; %d MPI ranks\n\n", peft::bench::machine_description().c_str(), ranks);
      std::printf("| floats averaged | bytes | GradientAverager::all() us | GB/s |\n|---:|---:|---:|---:|\n");
      for (const auto& [count, t] : measured)
        std::printf("| %ld | %.0f | %.1f | %.2f |\n", static_cast<long>(count), 4.0 * static_cast<double>(count),
                    t * 1e6, 4.0 * static_cast<double>(count) / t * 1e-9);
      std::printf("\nthis machine's link (%d ranks): %.2f us a hop, %.2f GB/s\n", ranks, here.latency * 1e6,
                  here.bytes_per_second * 1e-9);
      std::printf("network link assumed for the model: %.1f us, %.1f Gb/s\n\n", o.net_latency_us, o.net_gbps);
      std::printf("one rank, one %ld x %ld layer, N = %ld rows, forward + backward: LoRA r=8 %.2f ms (%.0f KiB of "
                  "gradients), full fine-tuning %.2f ms (%.0f MiB)\n\n",
                  static_cast<long>(o.d), static_cast<long>(o.d), static_cast<long>(o.rows), lora_step * 1e3,
                  lora_bytes / 1024, full_step * 1e3, full_bytes / (1024 * 1024));

      // 3. The stack: 128 matrices, a global batch of global_rows rows.
      const double matrices = 32 * 4, batches = static_cast<double>(o.global_rows) / static_cast<double>(o.rows);
      const double lora_compute = matrices * batches * lora_step / o.rank_speedup,
                   full_compute = matrices * batches * full_step / o.rank_speedup;
      const double lora_total = matrices * lora_bytes, full_total = matrices * full_bytes;
      std::printf("LLaMA-7B-sized stack: 32 layers x 4 adapted %ld x %ld matrices, a global batch of %ld rows, "
                  "ranks %.0fx this core; gradients per step: LoRA r=8 %.1f MiB, full %.2f GiB\n\n",
                  static_cast<long>(o.d), static_cast<long>(o.d), static_cast<long>(o.global_rows), o.rank_speedup,
                  lora_total / (1024 * 1024), full_total / (1024.0 * 1024 * 1024));
      std::printf("| ranks P | compute / P s | LoRA all-reduce s (here / network) | full all-reduce s (here / network) "
                  "| LoRA step s (network) | full step s (network) |\n|---:|---:|---:|---:|---:|---:|\n");
      for (double P = 1; P <= 1024; P *= 2) {
        const double lc = lora_compute / P, fc = full_compute / P;
        const double la = ring_allreduce(here, lora_total, P), lan = ring_allreduce(network, lora_total, P);
        const double fa = ring_allreduce(here, full_total, P), fan = ring_allreduce(network, full_total, P);
        std::printf("| %.0f | %.2f / %.2f | %.4f / %.4f | %.3f / %.3f | %.3f | %.3f |\n", P, lc, fc, la, lan, fa, fan,
                    lc + lan, fc + fan);
      }
      // The first P (any integer) at which the all-reduce takes at least compute / P.
      auto crossover = [](double compute, double bytes, const Link& link) {
        for (double P = 2; P <= 1e7; ++P)
          if (ring_allreduce(link, bytes, P) >= compute / P) return std::to_string(static_cast<long>(P)) + " ranks";
        return std::string("more than 10 million ranks");
      };
      std::printf("\ncommunication >= compute, network link: LoRA r=8 from %s, full fine-tuning from %s\n",
                  crossover(lora_compute, lora_total, network).c_str(), crossover(full_compute, full_total, network).c_str());
      std::printf("communication >= compute, this machine's link: LoRA r=8 from %s, full fine-tuning from %s\n",
                  crossover(lora_compute, lora_total, here).c_str(), crossover(full_compute, full_total, here).c_str());
    }

    // 4. Overlap of the all-reduce with the backward of the layers before.
    auto overlap_row = [&](const char* method, auto& stack) {
      double t[3];
      for (int how = 0; how < 3; ++how) t[how] = stack_step_seconds(stack, o.rows, static_cast<Averaging>(how), o.rounds);
      const double exposed_after = t[1] - t[0], exposed_per_layer = t[2] - t[0];
      if (rank == 0)
        std::printf("| %s | %.2f | %.2f (+%.2f) | %.2f (+%.2f) | %.0f%% |\n", method, t[0] * 1e3, t[1] * 1e3,
                    exposed_after * 1e3, t[2] * 1e3, exposed_per_layer * 1e3,
                    exposed_after > 0 ? 100 * (1 - exposed_per_layer / exposed_after) : 0.0);
    };
    if (rank == 0)
      std::printf("\noverlap: %ld layers of %ld x %ld, N = %ld rows per rank, one training step\n\n"
                  "| method | no averaging ms | all() after backward ms (+exposed) | start(g) per layer, finish() ms "
                  "(+exposed) | all-reduce hidden |\n|---|---:|---:|---:|---:|\n",
                  static_cast<long>(o.overlap_layers), static_cast<long>(o.overlap_d), static_cast<long>(o.overlap_d),
                  static_cast<long>(o.rows));
    {
      std::vector<peft::Adapted<peft::LoRA<float>>> stack;
      for (Index l = 0; l < o.overlap_layers; ++l)
        stack.emplace_back(peft::Linear<float>::random(o.overlap_d, o.overlap_d, rng),
                           peft::LoRA<float>(o.overlap_d, o.overlap_d, {.r = 8, .alpha = 16, .init = peft::LoRAInit::None}));
      overlap_row("LoRA r=8", stack);
    }
    {
      std::vector<peft::Adapted<peft::Full<float>>> stack;
      for (Index l = 0; l < o.overlap_layers; ++l)
        stack.emplace_back(peft::Linear<float>::random(o.overlap_d, o.overlap_d, rng), peft::Full<float>(o.overlap_d, o.overlap_d));
      overlap_row("full fine-tuning", stack);
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    code = 1;
  }
  MPI_Finalize();
  return code;
}
