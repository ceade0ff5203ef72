// Fine-tunes all-MiniLM-L6-v2 (examples/minilm/bert.hpp) for text
// classification with one adapter method at a time, as a user's own trainer
// would: the pretrained encoder stays frozen, an adapter of the chosen kind
// goes on the query and value projections of every layer (or, with
// --all-linear, on all six linear layers), and a fresh linear head reads the
// mean-pooled embedding. AdamW, warmup + cosine decay, gradient clipping per
// group (adapters, head). Prints one Markdown row per method: trainable
// parameters (adapters + head), test accuracy (mean ± std over seeds), seconds
// per epoch, and the process's peak resident memory.
//
//   finetune_minilm --model DIR --data DIR [--methods all|NAME,NAME...] [--seeds 3]
//                   [--epochs 3] [--batch 32] [--max-length 64] [--threads 1]
//                   [--all-linear] [--lr-scale 1] [--head-lr 3e-3] [--limit N]
//                   [--expect-accuracy P] [--list]
//   finetune_minilm --plot TABLE.md OUT.svg   (accuracy vs parameters from a printed table)
//   finetune_minilm --model DIR --bench STEPS [--bench-length 32] --methods NAME,... [--batch, --threads]
//
// --model: the model directory (config.json, model.safetensors, vocab.txt);
// --data: make_dataset.py's output (train.tsv, test.tsv). run.sh builds both.
// --limit: the first N training examples only; --expect-accuracy: exit 1 if a
// method's mean test accuracy (%) is below P (the smoke test's check).
#include <sys/resource.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <peft/peft.hpp>

#include "bert.hpp"
#include "svg_scatter.hpp"
#include "wordpiece.hpp"

namespace {

using T = float;
using peft::Index;
using Mat = peft::Matrix<T>;
using minilm::Module;

struct Example {
  int label;
  std::vector<std::int32_t> ids;
};

struct Options {
  std::string model, data;
  std::vector<std::string> methods;
  int seeds = 3, threads = 1;
  Index epochs = 3, batch = 32, max_length = 64, limit = -1;
  bool all_linear = false, list = false;
  double lr_scale = 1.0, head_lr = 3e-3, expect_accuracy = 0;
  Index bench_steps = 0, bench_length = 32;
  std::string plot_table, plot_svg;
};

/// One fine-tuning method: its name, its adapters' learning rate, and what it
/// puts on linear layer `which` of layer `l` (attach may leave a layer frozen).
struct Method {
  std::string name;
  double lr;
  std::function<void(minilm::BertEncoder<T>&, Index l, Module which, std::uint64_t seed)> attach;
};

/// A method whose adapter (type A) `make` builds from the layer's place and sizes, or declines (nullopt).
template <class A>
Method method(std::string name, double lr, std::string kind,
              std::function<std::optional<A>(Index l, Module which, Index d_in, Index d_out, std::uint64_t seed)> make) {
  return {std::move(name), lr,
          [make, kind](minilm::BertEncoder<T>& encoder, Index l, Module which, std::uint64_t seed) {
            const peft::Linear<T>& base = encoder.layer(l).linear(which).base();
            auto adapter = make(l, which, base.in_features(), base.out_features(), seed);
            if (!adapter) return;
            encoder.adapt(l, which, [&](peft::Linear<T> frozen) {
              return peft::AdaptedLayer<T>(peft::Adapted<A>(std::move(frozen), std::move(*adapter)), kind);
            });
          }};
}

/// A distinct seed per run, layer and matrix.
std::uint64_t seed_of(std::uint64_t seed, Index l, Module which) {
  return seed * 1000 + static_cast<std::uint64_t>(l) * 10 + static_cast<std::uint64_t>(which);
}

/// Every method of the table, for adapters on `targets` of every layer.
/// Learning rates: the adapters' scales differ (RED, IA3 and C3A want far
/// larger rates than the LoRA family); --lr-scale multiplies them all.
std::vector<Method> all_methods(const minilm::BertConfig& config, const std::vector<Module>& targets) {
  using namespace peft;
  std::vector<Method> m;
  m.push_back(method<Full<T>>("head only", 0, "FULL", [](Index, Module, Index, Index, std::uint64_t) {
    return std::optional<Full<T>>();
  }));
  m.push_back(method<Full<T>>("full ΔW", 1e-4, "FULL", [](Index, Module, Index i, Index o, std::uint64_t) {
    return std::optional(Full<T>(i, o));
  }));
  for (const Index r : {1, 8})
    m.push_back(method<LoRA<T>>("LoRA r=" + std::to_string(r), 2e-3, "LORA",
                                [r](Index l, Module w, Index i, Index o, std::uint64_t seed) {
                                  return std::optional(LoRA<T>(
                                      i, o, {.r = r, .alpha = 2.0 * static_cast<double>(r), .seed = seed_of(seed, l, w)}));
                                }));
  m.push_back(method<DoRA<T>>("DoRA r=8", 2e-3, "LORA", [](Index l, Module w, Index i, Index o, std::uint64_t seed) {
    return std::optional(DoRA<T>(i, o, {.r = 8, .alpha = 16, .seed = seed_of(seed, l, w)}));
  }));
  const std::vector<std::tuple<std::string, SURMConfig, double>> surms = {
      {"SURM circulant", {.structure = Structure::Circulant, .alpha = 1.0}, 1e-3},
      {"SURM Toeplitz", {.structure = Structure::Toeplitz, .alpha = 1.0}, 1e-3},
      {"SURM Kronecker r=16", {.structure = Structure::Kronecker, .rank = 16, .alpha = 16.0}, 3e-3},
      {"SURM LDR r=2", {.structure = Structure::LDR, .rank = 2, .alpha = 1.0}, 3e-4}};
  for (const auto& [name, surm, lr] : surms)
    m.push_back(method<SURM<T>>(name, lr, "SURM", [c = surm](Index l, Module w, Index i, Index o, std::uint64_t seed) {
      auto cl = c;
      cl.seed = seed_of(seed, l, w);
      return std::optional(SURM<T>(i, o, cl));
    }));
  m.push_back(method<SURMAdapter<T>>("SURM adapter (circulant)", 1e-3, "SURM_ADAPTER",
                                     [](Index l, Module w, Index i, Index o, std::uint64_t seed) {
                                       return std::optional(SURMAdapter<T>(i, o, {.seed = seed_of(seed, l, w)}));
                                     }));
  m.push_back(method<RED<T>>("RED", 3e-2, "RED", [](Index, Module, Index i, Index o, std::uint64_t) {
    return std::optional(RED<T>(i, o));
  }));
  m.push_back(method<IA3<T>>("IA3", 3e-2, "IA3", [](Index, Module, Index i, Index o, std::uint64_t) {
    return std::optional(IA3<T>(i, o));
  }));
  m.push_back(method<MELoRA<T>>("MELoRA 4x r=2", 3e-3, "MELORA", [](Index l, Module w, Index i, Index o, std::uint64_t seed) {
    return std::optional(MELoRA<T>(i, o, {.r = 2, .n = 4, .alpha = 4, .seed = seed_of(seed, l, w)}));
  }));
  // LoRTA: one CP factor set shared by every adapted matrix (all square: the
  // query/value default), made fresh at the first matrix of each run.
  auto factors = std::make_shared<std::shared_ptr<LoRTAFactors<T>>>();
  m.push_back(method<LoRTA<T>>(
      "LoRTA r=8", 3e-3, "LORTA", [=](Index l, Module w, Index, Index, std::uint64_t seed) -> std::optional<LoRTA<T>> {
        const auto type = static_cast<Index>(std::find(targets.begin(), targets.end(), w) - targets.begin());
        if (l == 0 && type == 0)
          *factors = std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = 8, .alpha = 16, .d = config.hidden,
                                                                    .layers = config.layers,
                                                                    .matrix_types = static_cast<Index>(targets.size()),
                                                                    .seed = seed});
        return LoRTA<T>(*factors, l, type);
      }));
  m.push_back(method<C3A<T>>("C3A b=64", 3e-1, "C3A", [](Index l, Module w, Index i, Index o, std::uint64_t seed) {
    return std::optional(C3A<T>(i, o, {.block_size = 64, .seed = seed_of(seed, l, w)}));
  }));
  m.push_back(method<LoKr<T>>("LoKr r=8", 3e-3, "LOKR", [](Index l, Module w, Index i, Index o, std::uint64_t seed) {
    return std::optional(LoKr<T>(i, o, {.r = 8, .alpha = 8, .seed = seed_of(seed, l, w)}));
  }));
  m.push_back(method<Houlsby<T>>("Houlsby m=16", 1e-3, "HOULSBY", [](Index l, Module w, Index i, Index o, std::uint64_t seed) {
    return std::optional(Houlsby<T>(i, o, {.bottleneck = 16, .seed = seed_of(seed, l, w)}));
  }));
  return m;
}

std::vector<Example> read_split(const std::string& path, const peft::examples::wordpiece_tokenizer& tokenizer,
                                Index max_length, int& classes) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("finetune_minilm: cannot open '" + path + "' (run make_dataset.py first)");
  std::vector<Example> out;
  std::string line;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string label, section, package, text;
    if (!std::getline(fields, label, '\t') || !std::getline(fields, section, '\t') ||
        !std::getline(fields, package, '\t') || !std::getline(fields, text))
      throw std::runtime_error("finetune_minilm: '" + path + "': expected label, section, package, text; got '" + line + "'");
    out.push_back({std::stoi(label), tokenizer.encode(text, static_cast<std::size_t>(max_length))});
    classes = std::max(classes, out.back().label + 1);
  }
  return out;
}

/// Examples [order[start], ...) padded to the longest of them.
minilm::TokenBatch make_batch(const std::vector<Example>& data, const std::vector<Index>& order, Index start, Index n,
                              std::vector<int>& labels) {
  minilm::TokenBatch b;
  b.sequences = n;
  for (Index i = 0; i < n; ++i)
    b.length = std::max<Index>(b.length, static_cast<Index>(data[static_cast<std::size_t>(order[static_cast<std::size_t>(start + i)])].ids.size()));
  b.ids.assign(static_cast<std::size_t>(n * b.length), 0);
  b.mask.assign(static_cast<std::size_t>(n * b.length), 0);
  labels.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const Example& e = data[static_cast<std::size_t>(order[static_cast<std::size_t>(start + i)])];
    std::copy(e.ids.begin(), e.ids.end(), b.ids.begin() + i * b.length);
    std::fill_n(b.mask.begin() + i * b.length, e.ids.size(), 1);
    labels[static_cast<std::size_t>(i)] = e.label;
  }
  return b;
}

/// Mean softmax cross-entropy and its gradient (p − onehot)/N.
double cross_entropy(const Mat& logits, const std::vector<int>& labels, Mat& dlogits) {
  const Index N = logits.rows();
  dlogits.resize(N, logits.cols());
  double loss = 0;
  for (Index i = 0; i < N; ++i) {
    const T top = logits.row(i).maxCoeff();
    const auto e = (logits.row(i).array() - top).exp().eval();
    const T sum = e.sum();
    const int y = labels[static_cast<std::size_t>(i)];
    loss -= std::log(static_cast<double>(e(y) / sum));
    dlogits.row(i) = e / (sum * static_cast<T>(N));
    dlogits(i, y) -= T(1) / static_cast<T>(N);
  }
  return loss / static_cast<double>(N);
}

struct Run {
  double accuracy, seconds_per_epoch;
  Index params;
};

/// The encoder with one method's adapters, a fresh head, and their optimizers.
struct Classifier {
  Classifier(const Options& o, const Method& method, const std::vector<Module>& targets, std::uint64_t seed, int classes)
      : encoder(minilm::BertEncoder<T>::load(o.model)),
        rng(seed),
        // A fresh head: nn.Linear's init for the frozen part, a zero Full update trained on top.
        head(peft::Linear<T>::random(encoder.config().hidden, classes, rng),
             peft::Full<T>(encoder.config().hidden, classes)),
        adapter_lr(method.lr * o.lr_scale),
        head_lr(o.head_lr) {
    for (Index l = 0; l < encoder.layers(); ++l)
      for (const Module which : targets) method.attach(encoder, l, which, seed);
    for (auto* layer : encoder.adapted_layers()) adapter_params.add(layer->parameters());
    head_params.add(head.parameters());
    adamw.emplace(adapter_params, peft::optim::AdamWOptions{.lr = adapter_lr});
    head_adamw.emplace(head_params, peft::optim::AdamWOptions{.lr = head_lr});
  }

  /// One training step at `lr_factor` times the base rates; returns the batch's mean loss.
  double step(const minilm::TokenBatch& batch, const std::vector<int>& labels, double lr_factor) {
    adamw->zero_grad();
    head_adamw->zero_grad();
    const double loss = cross_entropy(head.forward(encoder.forward(batch)), labels, dlogits);
    encoder.backward(head.backward(dlogits));
    if (adapter_params.size()) peft::optim::clip_grad_norm(adapter_params, 1.0);
    peft::optim::clip_grad_norm(head_params, 1.0);
    adamw->set_lr(adapter_lr * lr_factor);
    head_adamw->set_lr(head_lr * lr_factor);
    adamw->step();
    head_adamw->step();
    return loss;
  }

  double accuracy(const std::vector<Example>& data, Index batch) {
    encoder.set_training(false);
    std::vector<Index> order(data.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Index>(i);
    std::vector<int> labels;
    Index correct = 0;
    for (Index start = 0; start < static_cast<Index>(data.size()); start += batch) {
      const Index n = std::min<Index>(batch, static_cast<Index>(data.size()) - start);
      const Mat logits = head.forward(encoder.forward(make_batch(data, order, start, n, labels)));
      for (Index i = 0; i < n; ++i) {
        Index arg;
        logits.row(i).maxCoeff(&arg);
        correct += arg == labels[static_cast<std::size_t>(i)];
      }
    }
    encoder.set_training(true);
    return static_cast<double>(correct) / static_cast<double>(data.size());
  }

  minilm::BertEncoder<T> encoder;
  peft::Rng rng;
  peft::Adapted<peft::Full<T>> head;
  double adapter_lr, head_lr;
  peft::optim::ParamSet<T> adapter_params, head_params;
  std::optional<peft::optim::AdamW<T>> adamw, head_adamw;
  Mat dlogits;
};

Run train_and_test(const Options& o, const Method& method, const std::vector<Module>& targets, std::uint64_t seed,
                   const std::vector<Example>& train, const std::vector<Example>& test, int classes) {
  Classifier model(o, method, targets, seed, classes);
  const Index per_epoch = (static_cast<Index>(train.size()) + o.batch - 1) / o.batch, total = per_epoch * o.epochs;
  const peft::optim::Schedule schedule(total, std::max<Index>(1, total / 10), peft::optim::Decay::Cosine);
  std::vector<Index> order(train.size());
  std::vector<int> labels;
  Index step = 0;
  const auto start = std::chrono::steady_clock::now();
  for (Index epoch = 0; epoch < o.epochs; ++epoch) {
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Index>(i);
    for (std::size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[static_cast<std::size_t>(model.rng.next() % i)]);
    double epoch_loss = 0;
    for (Index b = 0; b < per_epoch; ++b, ++step) {
      const Index first = b * o.batch, n = std::min<Index>(o.batch, static_cast<Index>(train.size()) - first);
      const minilm::TokenBatch batch = make_batch(train, order, first, n, labels);
      epoch_loss += model.step(batch, labels, schedule.factor(step)) * static_cast<double>(n);
    }
    std::fprintf(stderr, "  %s seed %llu epoch %lld: loss %.4f\n", method.name.c_str(),
                 static_cast<unsigned long long>(seed), static_cast<long long>(epoch + 1),
                 epoch_loss / static_cast<double>(train.size()));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {model.accuracy(test, 64), seconds / static_cast<double>(o.epochs),
          model.adapter_params.num_params() + model.head_params.num_params()};
}

/// --bench: the median time of one training step on a fixed batch (random
/// ids, --batch sequences of --bench-length tokens, no padding), after 2 warm-up steps.
double step_milliseconds(const Options& o, const Method& method, const std::vector<Module>& targets) {
  Classifier model(o, method, targets, 1, 4);
  minilm::TokenBatch batch;
  batch.sequences = o.batch;
  batch.length = o.bench_length;
  peft::Rng rng(11);
  for (Index i = 0; i < o.batch * o.bench_length; ++i) {
    batch.ids.push_back(static_cast<std::int32_t>(1000 + rng.next() % 29000));
    batch.mask.push_back(1);
  }
  std::vector<int> labels(static_cast<std::size_t>(o.batch));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % 4);
  std::vector<double> ms;
  for (Index s = 0; s < o.bench_steps + 2; ++s) {
    const auto start = std::chrono::steady_clock::now();
    model.step(batch, labels, 1.0);
    if (s >= 2) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2), ms.end());
  return ms[ms.size() / 2];
}

/// --plot: test accuracy against trainable parameters, from a table this
/// program (or run.sh) printed, as an SVG scatter plot.
std::string plot_table(const std::string& table_path) {
  std::ifstream in(table_path);
  if (!in) throw std::runtime_error("finetune_minilm --plot: cannot open '" + table_path + "'");
  std::vector<peft::bench::ScatterPoint> points;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream row(line);
    for (std::string cell; std::getline(row, cell, '|');) cells.push_back(cell);
    // "| method | params | mean ± std | ...": cells[0] is empty (before the first bar).
    if (cells.size() < 4 || line.rfind("| method", 0) == 0 || line.rfind("|---", 0) == 0) continue;
    const std::string name = cells[1].substr(1, cells[1].size() - 2);
    const char* color = name.rfind("SURM", 0) == 0 ? "#c0392b" : name.rfind("LoRA", 0) == 0 ? "#2471a3" : "#444";
    points.push_back({name, std::stod(cells[2]), std::stod(cells[3]), color});
  }
  if (points.empty()) throw std::runtime_error("finetune_minilm --plot: no rows in '" + table_path + "'");
  return peft::bench::scatter_svg(points, {.title = "MiniLM-L6, Debian package sections: test accuracy vs parameters",
                                           .x_label = "trainable parameters (adapters + head)",
                                           .y_label = "test accuracy (mean of seeds)",
                                           .y_unit = "%",
                                           .y_step = 1.0});
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("finetune_minilm: " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") o.model = value();
    else if (arg == "--data") o.data = value();
    else if (arg == "--methods") {
      std::stringstream list(value());
      for (std::string name; std::getline(list, name, ',');) o.methods.push_back(name);
    } else if (arg == "--seeds") o.seeds = std::stoi(value());
    else if (arg == "--epochs") o.epochs = std::stol(value());
    else if (arg == "--batch") o.batch = std::stol(value());
    else if (arg == "--max-length") o.max_length = std::stol(value());
    else if (arg == "--threads") o.threads = std::stoi(value());
    else if (arg == "--limit") o.limit = std::stol(value());
    else if (arg == "--lr-scale") o.lr_scale = std::stod(value());
    else if (arg == "--head-lr") o.head_lr = std::stod(value());
    else if (arg == "--expect-accuracy") o.expect_accuracy = std::stod(value());
    else if (arg == "--bench") o.bench_steps = std::stol(value());
    else if (arg == "--bench-length") o.bench_length = std::stol(value());
    else if (arg == "--plot") {
      o.plot_table = value();
      o.plot_svg = value();
    } else if (arg == "--all-linear") o.all_linear = true;
    else if (arg == "--list") o.list = true;
    else throw std::invalid_argument("finetune_minilm: unknown option '" + arg + "' (see the comment at the top)");
  }
  if (!o.list && o.plot_table.empty() && (o.model.empty() || (o.data.empty() && o.bench_steps == 0)))
    throw std::invalid_argument("finetune_minilm: --model DIR and --data DIR are required (run.sh passes both)");
  if (o.seeds < 1 || o.epochs < 1 || o.batch < 1 || o.max_length < 2 || o.threads < 1)
    throw std::invalid_argument("finetune_minilm: --seeds, --epochs, --batch, --threads >= 1 and --max-length >= 2");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const std::vector<Module> targets =
        o.all_linear ? std::vector<Module>{Module::Query, Module::Key, Module::Value, Module::AttentionOutput,
                                           Module::Intermediate, Module::Output}
                     : std::vector<Module>{Module::Query, Module::Value};
    if (!o.plot_table.empty()) {
      std::ofstream(o.plot_svg) << plot_table(o.plot_table);
      return 0;
    }
    const minilm::BertConfig config = o.list ? minilm::BertConfig{} : minilm::BertConfig::read(o.model + "/config.json");
    const std::vector<Method> methods = all_methods(config, targets);
    if (o.list) {
      for (const auto& m : methods) std::printf("%s\n", m.name.c_str());
      return 0;
    }
    peft::set_gemm_threads(o.threads);
#ifdef _OPENMP
    omp_set_num_threads(o.threads);  // the encoder's attention loops
#endif
    if (o.bench_steps > 0) {
      std::printf("| method | ms per step (batch %lld x %lld tokens, %d threads) |\n|---|---:|\n",
                  static_cast<long long>(o.batch), static_cast<long long>(o.bench_length), o.threads);
      for (const Method& m : methods)
        if (std::find(o.methods.begin(), o.methods.end(), m.name) != o.methods.end())
          std::printf("| %s | %.2f |\n", m.name.c_str(), step_milliseconds(o, m, targets));
      return 0;
    }
    const peft::examples::wordpiece_tokenizer tokenizer(o.model + "/vocab.txt");
    int classes = 0;
    std::vector<Example> train = read_split(o.data + "/train.tsv", tokenizer, o.max_length, classes);
    const std::vector<Example> test = read_split(o.data + "/test.tsv", tokenizer, o.max_length, classes);
    if (o.limit > 0 && static_cast<Index>(train.size()) > o.limit) train.resize(static_cast<std::size_t>(o.limit));
    std::printf("| method | trainable params | test accuracy %% (%d seeds) | s / epoch | peak RSS MB |\n"
                "|---|---:|---:|---:|---:|\n", o.seeds);
    bool below = false, ran = false;
    for (const Method& m : methods) {
      if (!o.methods.empty() && o.methods != std::vector<std::string>{"all"} &&
          std::find(o.methods.begin(), o.methods.end(), m.name) == o.methods.end())
        continue;
      std::vector<double> acc;
      double seconds = 0;
      Index params = 0;
      for (int s = 0; s < o.seeds; ++s) {
        const Run r = train_and_test(o, m, targets, static_cast<std::uint64_t>(s + 1), train, test, classes);
        acc.push_back(100 * r.accuracy);
        seconds += r.seconds_per_epoch / o.seeds;
        params = r.params;
      }
      double mean = 0, var = 0;
      for (double a : acc) mean += a / static_cast<double>(acc.size());
      for (double a : acc) var += (a - mean) * (a - mean) / std::max<double>(1, static_cast<double>(acc.size()) - 1);
      rusage usage{};
      getrusage(RUSAGE_SELF, &usage);
      std::printf("| %s | %lld | %.1f ± %.1f | %.1f | %.0f |\n", m.name.c_str(), static_cast<long long>(params), mean,
                  std::sqrt(var), seconds, static_cast<double>(usage.ru_maxrss) / 1024.0);
      std::fflush(stdout);
      below = below || mean < o.expect_accuracy;
      ran = true;
    }
    if (!ran) throw std::invalid_argument("finetune_minilm: no method matches --methods (see --list)");
    if (below) {
      std::fprintf(stderr, "finetune_minilm: a method's accuracy is below --expect-accuracy %.1f%%\n", o.expect_accuracy);
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
