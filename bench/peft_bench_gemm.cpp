// peft-bench-gemm: the frozen float32 layer's two products (Y = X·Wᵀ and
// dX = dY·W, W: d x d, N rows) on each GEMM backend this binary was built
// with, timed in one run, and their share of the CPU's FMA peak measured in
// the same run. Prints a markdown table; progress goes to stderr.
//
//   peft-bench-gemm [--d 4096] [--N 256] [--rounds 11] [--threads 1,2] [--gemm eigen,openblas,onednn]
//
// The rows call what Linear<float> runs in each build: Eigen's product (the
// default build), OpenBLAS's sgemm (peft::blas hands Eigen's products to it),
// oneDNN's float32 matmul through peft's primitive cache (peft::onednn).
// scripts/bench.sh builds it where OpenBLAS and oneDNN are installed.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <Eigen/Core>

#include <peft/core/types.hpp>
#if defined(PEFT_WITH_ONEDNN)
#include <omp.h>
#include <peft/core/onednn_matmul.hpp>
#endif
#if defined(PEFT_BENCH_OPENBLAS)
#include <cblas.h>
extern "C" {
char* openblas_get_corename(void);
void openblas_set_num_threads(int);
}
#endif

#include "fma_peak.hpp"
#include "timing.hpp"

namespace {

using peft::Index;
using Mat = peft::Matrix<float>;

struct Options {
  Index d = 4096, rows = 256;
  int rounds = 11;
  std::vector<int> threads{1, 2};
  std::vector<std::string> backends;  // empty: every one built in
};

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("peft-bench-gemm: " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--d") o.d = std::stol(value());
    else if (arg == "--N") o.rows = std::stol(value());
    else if (arg == "--rounds") o.rounds = std::stoi(value());
    else if (arg == "--threads") {
      o.threads.clear();
      for (const auto& t : split(value())) o.threads.push_back(std::stoi(t));
    } else if (arg == "--gemm") o.backends = split(value());
    else if (arg == "-h" || arg == "--help") {
      std::puts("usage: peft-bench-gemm [--d 4096] [--N 256] [--rounds 11] [--threads 1,2] [--gemm eigen,openblas,onednn]");
      std::exit(0);
    } else {
      throw std::invalid_argument("peft-bench-gemm: unknown argument '" + arg + "' (try --help)");
    }
  }
  if (o.d < 1 || o.rows < 1 || o.rounds < 1 || o.threads.empty())
    throw std::invalid_argument("peft-bench-gemm: --d, --N, --rounds and --threads need positive values");
  for (const int t : o.threads)
    if (t < 1) throw std::invalid_argument("peft-bench-gemm: --threads needs counts >= 1");
  return o;
}

struct Backend {
  std::string name;
  std::function<void(const Mat& W, const Mat& X, const Mat& dY, Mat& Y, Mat& dX)> products;
};

/// The backends built into this binary, in the order --gemm names them.
std::vector<Backend> backends(const std::vector<std::string>& wanted) {
  std::vector<Backend> all;
  all.push_back({"Eigen", [](const Mat& W, const Mat& X, const Mat& dY, Mat& Y, Mat& dX) {
                   Y.resize(X.rows(), W.rows());
                   Y.noalias() = X * W.transpose();
                   dX.resize(dY.rows(), W.cols());
                   dX.noalias() = dY * W;
                 }});
#if defined(PEFT_BENCH_OPENBLAS)
  all.push_back({std::string("OpenBLAS (") + openblas_get_corename() + ")",
                 [](const Mat& W, const Mat& X, const Mat& dY, Mat& Y, Mat& dX) {
                   const auto n = static_cast<int>(X.rows()), d_out = static_cast<int>(W.rows()),
                              d_in = static_cast<int>(W.cols());
                   Y.resize(n, d_out);
                   cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d_out, d_in, 1.0f, X.data(), d_in,
                               W.data(), d_in, 0.0f, Y.data(), d_out);
                   dX.resize(n, d_in);
                   cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d_in, d_out, 1.0f, dY.data(), d_out,
                               W.data(), d_in, 0.0f, dX.data(), d_in);
                 }});
#endif
#if defined(PEFT_WITH_ONEDNN)
  all.push_back({"oneDNN f32", [](const Mat& W, const Mat& X, const Mat& dY, Mat& Y, Mat& dX) {
                   peft::detail::onednn::f32_matmul("peft-bench-gemm", X, W.data(), W.rows(), true, nullptr, Y);
                   peft::detail::onednn::f32_matmul("peft-bench-gemm", dY, W.data(), W.cols(), false, nullptr, dX);
                 }});
#endif
  if (wanted.empty()) return all;
  std::vector<Backend> chosen;
  for (const auto& w : wanted) {
    bool found = false;
    for (const auto& b : all) {
      std::string key = b.name.substr(0, b.name.find(' '));
      for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (key == w) {
        chosen.push_back(b);
        found = true;
      }
    }
    if (!found) throw std::invalid_argument("peft-bench-gemm: --gemm " + w + " is not built into this binary");
  }
  return chosen;
}

void set_threads(int threads) {
  Eigen::setNbThreads(threads);
#if defined(PEFT_BENCH_OPENBLAS)
  openblas_set_num_threads(threads);
#endif
#if defined(PEFT_WITH_ONEDNN)
  omp_set_num_threads(threads);
#endif
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const std::vector<Backend> cases = backends(o.backends);
  const Mat W = Mat::Random(o.d, o.d), X = Mat::Random(o.rows, o.d), dY = Mat::Random(o.rows, o.d);
  const double flops = 4.0 * static_cast<double>(o.rows) * static_cast<double>(o.d) * static_cast<double>(o.d);

  // The products must agree before they are timed.
  Mat Y_ref, dX_ref;
  cases.front().products(W, X, dY, Y_ref, dX_ref);
  for (const auto& c : cases) {
    Mat Y, dX;
    c.products(W, X, dY, Y, dX);
    const double err = std::max((Y - Y_ref).norm() / Y_ref.norm(), (dX - dX_ref).norm() / dX_ref.norm());
    if (!(err < 1e-5)) throw std::runtime_error("peft-bench-gemm: " + c.name + " disagrees with " +
                                                cases.front().name + " (relative error " + std::to_string(err) + ")");
  }

  std::printf("%s\n\n", peft::bench::machine_description().c_str());
  std::printf("| backend (d = %ld, N = %ld) | threads | fwd+bwd ms | GFLOP/s | share of FMA peak | vs %s |\n",
              static_cast<long>(o.d), static_cast<long>(o.rows), cases.front().name.c_str());
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const int threads : o.threads) {
    set_threads(threads);
    const double peak_before = peft::bench::measured_fma_peak(threads);
    std::vector<std::vector<double>> samples(cases.size());
    Mat Y, dX;
    for (int round = -1; round < o.rounds; ++round) {
      std::cerr << "threads " << threads << ": round " << round + 1 << "/" << o.rounds << "\r";
      for (std::size_t i = 0; i < cases.size(); ++i) {
        const std::size_t c = (i + static_cast<std::size_t>(round + 1)) % cases.size();  // a new order each round
        // OpenBLAS's threads spin for a while after each call; let them sleep
        // before another pool's threads want the cores.
        if (threads > 1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const double t = peft::bench::seconds_of([&] { cases[c].products(W, X, dY, Y, dX); });
        if (round >= 0) samples[c].push_back(t);
      }
    }
    const double peak = std::max(peak_before, peft::bench::measured_fma_peak(threads));
    const double reference = peft::bench::median(samples.front());
    for (std::size_t c = 0; c < cases.size(); ++c) {
      const double t = peft::bench::median(samples[c]);
      char share[48] = "unknown (no FMA in this build)";
      if (peak > 0) std::snprintf(share, sizeof share, "%.0f%% of %.1f", 100.0 * flops / t * 1e-9 / peak, peak);
      std::printf("| %s | %d | %.3f | %.1f | %s | %.2fx |\n", cases[c].name.c_str(), threads, t * 1e3,
                  flops / t * 1e-9, share, reference / t);
    }
  }
  std::cerr << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
