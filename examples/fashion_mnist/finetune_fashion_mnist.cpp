// Fine-tuning on Fashion-MNIST, one run per method, to compare accuracy with
// trainable parameters (the SURM and RED papers' comparison, at small scale):
//   1. pretrain an MLP 784 → 256 → 256 → 256 → 5 on classes 0–4
//   2. freeze it; for each method, adapt the hidden layers, train them with a
//      fresh head on classes 5–9, and test on the test set's classes 5–9
//   3. save the best adapter in Hugging Face PEFT's format, reload it, merge,
//      and check the deployed model gives the same accuracy
// Writes results.csv and results.svg (accuracy vs parameters) to --out.
//
//   finetune_fashion_mnist [--quick] [--data DIR] [--out DIR] [--epochs E] [--seed S] [--lr-scale F] [--head-lr LR]
//                          [--base f32|bf16|int8]
// (--base bf16 fine-tunes on the backbone rounded to bfloat16, peft::LinearBF16;
// --base int8 on it quantised to int8 with row scales, peft::LinearInt8.)
// (--lr-scale multiplies every method's learning rate and --head-lr sets the
// head's, for sweeps.)
//   mpirun -np 2 finetune_fashion_mnist --dist ...
// trains data-parallel over MPI (built with PEFT_WITH_MPI, target
// peft::dist): every rank takes its share of each batch and the gradients are
// averaged (peft/dist/data_parallel.hpp); rank 0 prints and writes the results.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>  // isatty

#if defined(PEFT_WITH_MPI)
#include <peft/dist/data_parallel.hpp>
#endif

#include "finetune.hpp"
#include "svg_scatter.hpp"
#include "idx.hpp"

namespace {

using namespace fmnist;

struct Result {
  std::string method;
  Index adapter_params, head_params;
  double accuracy, train_loss, seconds;
};

/// A redrawn bar when stderr is a terminal; otherwise (a log file, a pipe) one
/// plain line per quarter of the run, so a redirected log stays readable.
void progress_bar(const std::string& label, Index step, Index total, double loss) {
  static const bool terminal = isatty(fileno(stderr)) != 0;
  const int percent = static_cast<int>(100 * step / total);
  if (!terminal) {
    const Index quarter = std::max<Index>(1, total / 4);
    if (step % quarter == 0 || step == total)
      std::fprintf(stderr, "%-22s %3d%%  loss %.4f\n", label.c_str(), percent, loss);
    return;
  }
  const int width = 30, filled = static_cast<int>(width * step / total);
  std::fprintf(stderr, "\r%-22s [%s%s] %3d%%  loss %.4f", label.c_str(), std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), percent, loss);
  if (step == total) std::fprintf(stderr, "\n");
}

std::string svg_plot(const std::vector<Result>& results) {
  std::vector<peft::bench::ScatterPoint> points;
  for (const auto& r : results) {
    const char* color = r.method.rfind("SURM", 0) == 0 ? "#c0392b" : r.method.rfind("LoRA", 0) == 0 ? "#2471a3" : "#444";
    points.push_back({r.method, static_cast<double>(r.adapter_params + r.head_params), 100 * r.accuracy, color});
  }
  return peft::bench::scatter_svg(points, {.title = "Fashion-MNIST 5–9: test accuracy vs trainable parameters",
                                           .x_label = "trainable parameters (adapter + head)",
                                           .y_label = "test accuracy",
                                           .y_unit = "%",
                                           .y_step = 1.0});
}

/// Accuracy of a deployed model: merged hidden layers (or frozen ones) and a plain head.
double deployed_accuracy(std::vector<std::optional<peft::AdaptedLayer<T>>>& hidden,
                         const std::vector<peft::Linear<T>>& backbone, const peft::Linear<T>& head,
                         const Dataset& data) {
  Mat h = data.X, pre;
  for (std::size_t l = 0; l < hidden.size(); ++l) {
    if (hidden[l]) hidden[l]->forward(h, pre);
    else backbone[l].forward(h, pre);
    h = pre.unaryExpr([](T z) { return peft::detail::activate(peft::Activation::GELU, z); });
  }
  const Mat logits = head.forward(h);
  Index correct = 0;
  for (Index i = 0; i < logits.rows(); ++i) {
    Index arg;
    logits.row(i).maxCoeff(&arg);
    correct += arg == data.y[static_cast<std::size_t>(i)];
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

int run(int argc, char** argv) {
  bool quick = false;
  std::string data_dir = "/usr/share/datasets/fashion-mnist", out = "fashion_mnist_results";
  Index epochs = -1;
  std::uint64_t seed = 1;
  double lr_scale = 1.0, head_lr = 3e-2;
  Base storage = Base::F32;
  bool distributed = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + a);
      return argv[++i];
    };
    if (a == "--quick") quick = true;
    else if (a == "--data") data_dir = value();
    else if (a == "--out") out = value();
    else if (a == "--epochs") epochs = std::stol(value());
    else if (a == "--seed") seed = std::stoull(value());
    else if (a == "--lr-scale") lr_scale = std::stod(value());
    else if (a == "--head-lr") head_lr = std::stod(value());
    else if (a == "--dist") distributed = true;
    else if (a == "--base") {
      const std::string b = value();
      if (b != "f32" && b != "bf16" && b != "int8")
        throw std::invalid_argument("--base takes f32, bf16 or int8, got '" + b + "'");
      storage = b == "bf16" ? Base::BF16 : b == "int8" ? Base::Int8 : Base::F32;
    } else {
      std::cerr << "usage: finetune_fashion_mnist [--quick] [--data DIR] [--out DIR] [--epochs E] [--seed S] "
                   "[--lr-scale F] [--head-lr LR] [--base f32|bf16|int8] [--dist]\n";
      return a == "--help" ? 0 : 2;
    }
  }
  int rank = 0, ranks = 1;
#if defined(PEFT_WITH_MPI)
  if (distributed) {  // main() initialised MPI
    rank = peft::dist::rank();
    ranks = peft::dist::size();
  }
#else
  if (distributed) throw std::invalid_argument("--dist needs a build with MPI (CMake -DPEFT_WITH_MPI=ON, peft::dist)");
#endif
  const bool root = rank == 0;
  if (!root) std::cerr.setstate(std::ios::failbit);  // one rank reports
  const Index limit = quick ? 6000 : 30000, test_limit = quick ? 2000 : 5000;
  // --quick fine-tunes 2 epochs like the full run: the learning rates were
  // tuned for 2 epochs, and with 1 (47 AdamW steps) the larger rates had not
  // settled (LoRA r=4 at 77% under r=1, LDR at 39%, in the 2026-12-04 runs).
  const Index pre_epochs = quick ? 1 : 3, ft_epochs = epochs > 0 ? epochs : 2;

  const Mat train_X = read_images(data_dir + "/train-images-idx3-ubyte.gz");
  const auto train_y = read_labels(data_dir + "/train-labels-idx1-ubyte.gz");
  const Mat test_X = read_images(data_dir + "/t10k-images-idx3-ubyte.gz");
  const auto test_y = read_labels(data_dir + "/t10k-labels-idx1-ubyte.gz");
  const Dataset pre_train = select_classes(train_X, train_y, 0, 5, limit);
  const Dataset pre_test = select_classes(test_X, test_y, 0, 5, test_limit);
  const Dataset ft_train = select_classes(train_X, train_y, 5, 5, limit);
  const Dataset ft_test = select_classes(test_X, test_y, 5, 5, test_limit);
  std::cerr << "Fashion-MNIST: pretrain on " << pre_train.size() << " images of classes 0-4, fine-tune on "
            << ft_train.size() << " of classes 5-9 for " << ft_epochs << " epochs, test on " << ft_test.size()
            << (quick ? " (--quick: a smoke run; accuracies move by a few points with --seed, LDR by up to 15)" : "")
            << "\n";

  auto options = [&](const std::string& label, double lr, Index ep, double head_lr) {
    TrainOptions o;
    o.epochs = ep;
    o.lr = lr;
    o.head_lr = head_lr;
    o.seed = seed;
    if (root) o.progress = [label](Index s, Index t, double loss) { progress_bar(label, s, t, loss); };
    o.rank = rank;
    o.ranks = ranks;
#if defined(PEFT_WITH_MPI)
    if (distributed)
      o.distribute = [](peft::optim::ParamSet<T>& adapters, peft::optim::ParamSet<T>& head) -> std::function<void()> {
        peft::dist::broadcast_parameters(adapters);  // every rank starts from rank 0's
        peft::dist::broadcast_parameters(head);
        auto average = std::make_shared<peft::dist::GradientAverager<T>>(
            std::vector<std::vector<peft::Parameter<T>>>{adapters.views(), head.views()});
        return [average] { average->all(); };
      };
#endif
    return o;
  };
  double pre_accuracy = 0;
  const auto backbone = pretrain(pre_train, pre_test, 5, options("pretrain (0-4)", 1e-3, pre_epochs, 1e-3), pre_accuracy);
  std::cerr << "pretrained backbone: " << 100 * pre_accuracy << "% test accuracy on classes 0-4\n";
  // With --base bf16 or int8 the fine-tuning runs on the backbone rounded;
  // the deployed model is the float32 layer that computes (dequantised).
  std::vector<peft::Linear<T>> deployed_backbone;
  for (const auto& layer : backbone)
    deployed_backbone.push_back(storage == Base::BF16   ? peft::LinearBF16(layer).dequantised()
                                : storage == Base::Int8 ? peft::LinearInt8(layer).dequantised()
                                                        : layer);
  if (storage == Base::BF16)
    std::cerr << "frozen base: bfloat16 (peft::LinearBF16, " << peft::gemm_backend().bf16 << ")\n";
  if (storage == Base::Int8) std::cerr << "frozen base: int8 with row scales (peft::LinearInt8)\n";

  std::vector<Result> results;
  std::unique_ptr<Model> best;
  const Method* best_method = nullptr;
  double best_accuracy = -1;
  const auto methods = all_methods(seed);
  for (const auto& m : methods) {
    auto model = std::make_unique<Model>(backbone, m, 5, seed + 7, storage);
    const auto start = std::chrono::steady_clock::now();
    const double loss = train(*model, ft_train, options(m.name, m.lr * lr_scale, ft_epochs, head_lr));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double acc = accuracy(*model, ft_test);
    const Index head_params = model->head().num_params();
    results.push_back({m.name, model->adapter_params(), head_params, acc, loss, seconds});
    if (m.peft_config && acc > best_accuracy) {
      best_accuracy = acc;
      best_method = &m;
      best = std::move(model);
    }
  }

  if (!root) return 0;  // rank 0 reports, saves and deploys
  if (distributed)
    std::printf("data-parallel over %d MPI ranks (each takes 1/%d of every batch; gradients averaged)\n", ranks, ranks);
  std::filesystem::create_directories(out);
  std::ofstream csv(std::filesystem::path(out) / "results.csv");
  csv << "method,adapter_params,head_params,test_accuracy,final_train_loss,seconds\n";
  std::printf("\n| method | adapter params | + head | test accuracy (5-9) | train loss | time |\n"
              "|---|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    csv << '"' << r.method << "\"," << r.adapter_params << ',' << r.head_params << ',' << r.accuracy << ','
        << r.train_loss << ',' << r.seconds << '\n';
    std::printf("| %s | %ld | %ld | %.2f%% | %.4f | %.1f s |\n", r.method.c_str(), static_cast<long>(r.adapter_params),
                static_cast<long>(r.adapter_params + r.head_params), 100 * r.accuracy, r.train_loss, r.seconds);
  }
  std::ofstream(std::filesystem::path(out) / "results.svg") << svg_plot(results);

  // Deploy the best adapter: save (PEFT format + the head), reload, merge, infer.
  if (best) {
    const auto dir = std::filesystem::path(out) / "best_adapter";
    std::vector<peft::io::SavedModule<T>> modules;
    for (std::size_t l = 0; l < best->adapted().size(); ++l)
      if (best->adapted()[l]) modules.emplace_back(kModules[l], *best->adapted()[l]);
    peft::io::save_peft<T>(dir, best_method->peft_config(), modules);
    best->head().merge();
    peft::io::write_safetensors(dir / "head.safetensors",
                                {{"weight", peft::io::Tensor::from(best->head().base().weight())},
                                 {"bias", peft::io::Tensor::from(best->head().base().bias().transpose(),
                                                                 {best->head().base().bias().size()})}});
    const auto loaded = peft::io::load_peft<T>(dir);
    const auto head_file = peft::io::read_safetensors(dir / "head.safetensors");
    const peft::Linear<T> head(head_file.at("weight").to_matrix<T>(), head_file.at("bias").to_vector<T>());
    std::vector<std::optional<peft::AdaptedLayer<T>>> hidden;
    for (std::size_t l = 0; l < backbone.size(); ++l) {
      if (!loaded.contains(kModules[l])) {
        hidden.emplace_back();
        continue;
      }
      hidden.emplace_back(loaded.wrap(kModules[l], deployed_backbone[l]));
      if (hidden.back()->mergeable()) hidden.back()->merge(/*safe_merge=*/true);
    }
    const double deployed = deployed_accuracy(hidden, deployed_backbone, head, ft_test);
    std::printf("\nbest adapter: %s (%.2f%%), saved to %s (%s); reloaded and merged: %.2f%%\n",
                best_method->name.c_str(), 100 * best_accuracy, dir.c_str(), loaded.config().peft_type.c_str(),
                100 * deployed);
    // Merging into float32 changes nothing beyond float rounding; trained on
    // a bfloat16 base with oneDNN, the products rounded X as well.
    const double tolerance = storage == Base::BF16 && peft::LinearBF16::kRoundsActivations ? 0.01 : 0.002;
    if (std::abs(deployed - best_accuracy) > tolerance) {
      std::fprintf(stderr, "deployed accuracy differs from the trained model's\n");
      return 1;
    }
  }
  std::printf("wrote %s/results.csv and %s/results.svg\n", out.c_str(), out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(PEFT_WITH_MPI)
  // With --dist, MPI lives for the whole run; a failure on any rank ends the
  // job with MPI_Abort (the other ranks may be waiting in a collective).
  const bool distributed = std::any_of(argv + 1, argv + argc, [](const char* a) { return std::string(a) == "--dist"; });
  if (distributed) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);  // OpenMP threads call no MPI
  }
#endif
  int code = 1;
  try {
    code = run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune_fashion_mnist: %s\n", e.what());  // not std::cerr: muted on ranks > 0
#if defined(PEFT_WITH_MPI)
    if (distributed) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  }
#if defined(PEFT_WITH_MPI)
  if (distributed) MPI_Finalize();
#endif
  return code;
}
