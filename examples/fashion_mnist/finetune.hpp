#pragma once
// The fine-tuning experiment's model and methods, shared by the example
// (finetune_fashion_mnist.cpp) and its test: an MLP 784 → 256 → 256 → 256 → k
// with exact GELU, every layer a peft::Linear. Pretraining trains each layer
// through a `Full` adapter and merges it; fine-tuning freezes the hidden
// layers (as float32 Linear, or rounded: LinearBF16, LinearInt8), puts one
// method's adapter on them, and trains it with a fresh head.

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <peft/peft.hpp>

namespace fmnist {

using T = float;
using peft::Index;
using Mat = peft::Matrix<T>;

inline constexpr Index kHidden = 256;
inline const std::vector<Index> kWidths = {784, kHidden, kHidden, kHidden};
inline const std::vector<std::string> kModules = {"fc1", "fc2", "fc3"};

struct Dataset {
  Mat X;
  std::vector<int> y;  ///< 0 .. classes − 1
  Index size() const { return X.rows(); }
};

/// The frozen hidden layers' weights: float32 (peft::Linear), bfloat16
/// (peft::LinearBF16) or int8 with row scales (peft::LinearInt8).
enum class Base { F32, BF16, Int8 };

/// One fine-tuning method: builds the adapter of hidden layer `layer` around
/// its frozen base, kept as `storage` (nullopt: the layer stays frozen and
/// unadapted), and describes itself for save_peft.
struct Method {
  std::string name;
  double lr;
  std::function<std::optional<peft::AdaptedLayer<T>>(Index layer, peft::Linear<T> base, Base storage)> adapt;
  std::function<peft::io::PeftConfig()> peft_config;  ///< empty when PEFT's format has no such type
};

/// MLP with hidden layers (adapted or plain) and a trainable head.
class Model {
 public:
  Model(std::vector<peft::Linear<T>> backbone, const Method& method, Index classes, std::uint64_t seed,
        Base storage = Base::F32) {
    for (Index l = 0; l < static_cast<Index>(backbone.size()); ++l) {
      auto adapted = method.adapt(l, backbone[static_cast<std::size_t>(l)], storage);
      if (storage == Base::BF16) plain_bf16_.emplace_back(backbone[static_cast<std::size_t>(l)]);
      if (storage == Base::Int8) plain_int8_.emplace_back(backbone[static_cast<std::size_t>(l)]);
      plain_.push_back(std::move(backbone[static_cast<std::size_t>(l)]));
      adapted_.push_back(std::move(adapted));
    }
    peft::Rng rng(seed);
    // A fresh head: nn.Linear's init for the frozen part, a zero Full update on top.
    head_.emplace(peft::Adapted<peft::Full<T>>(peft::Linear<T>::random(kHidden, classes, rng),
                                               peft::Full<T>(kHidden, classes)),
                  "HEAD");
    lowest_trained_ = static_cast<Index>(adapted_.size());
    for (Index l = static_cast<Index>(adapted_.size()) - 1; l >= 0; --l)
      if (adapted_[static_cast<std::size_t>(l)]) lowest_trained_ = l;
  }

  /// Logits for X (N x 784); keeps pre-activations for backward.
  const Mat& forward(const Mat& X) {
    pre_.resize(adapted_.size());
    h_.resize(adapted_.size() + 1);
    h_[0] = X;
    for (std::size_t l = 0; l < adapted_.size(); ++l) {
      if (adapted_[l]) adapted_[l]->forward(h_[l], pre_[l]);
      else if (!plain_bf16_.empty()) plain_bf16_[l].forward(h_[l], pre_[l]);
      else if (!plain_int8_.empty()) plain_int8_[l].forward(h_[l], pre_[l]);
      else plain_[l].forward(h_[l], pre_[l]);
      h_[l + 1] = pre_[l].unaryExpr([](T z) { return peft::detail::activate(peft::Activation::GELU, z); });
    }
    head_->forward(h_.back(), logits_);
    return logits_;
  }

  /// Backward from dL/dlogits, down to the lowest layer with parameters.
  void backward(const Mat& dlogits) {
    head_->backward(dlogits, dh_);
    for (Index l = static_cast<Index>(adapted_.size()) - 1; l >= lowest_trained_; --l) {
      const auto i = static_cast<std::size_t>(l);
      dpre_ = dh_.cwiseProduct(
          pre_[i].unaryExpr([](T z) { return peft::detail::activate_derivative(peft::Activation::GELU, z); }));
      if (adapted_[i]) adapted_[i]->backward(dpre_, dh_);
      else if (!plain_bf16_.empty()) dh_ = plain_bf16_[i].backward(dpre_);
      else if (!plain_int8_.empty()) dh_ = plain_int8_[i].backward(dpre_);
      else dh_ = plain_[i].backward(dpre_);
    }
  }

  /// The adapters' parameters (LoRTA's shared factors once).
  peft::optim::ParamSet<T> adapter_parameters() {
    peft::optim::ParamSet<T> set;
    for (auto& a : adapted_)
      if (a) set.add(a->parameters());
    return set;
  }
  peft::optim::ParamSet<T> head_parameters() { return {head_->parameters()}; }
  /// Trainable parameters of the adapters alone (the head is the same for every method).
  Index adapter_params() { return adapter_parameters().num_params(); }

  void set_training(bool training) {
    for (auto& a : adapted_)
      if (a) a->set_training(training);
  }
  std::vector<std::optional<peft::AdaptedLayer<T>>>& adapted() { return adapted_; }
  peft::AdaptedLayer<T>& head() { return *head_; }

 private:
  std::vector<peft::Linear<T>> plain_;
  std::vector<peft::LinearBF16> plain_bf16_;  // the frozen layers in bfloat16 (Base::BF16), else empty
  std::vector<peft::LinearInt8> plain_int8_;  // the frozen layers in int8 (Base::Int8), else empty
  std::vector<std::optional<peft::AdaptedLayer<T>>> adapted_;
  std::optional<peft::AdaptedLayer<T>> head_;
  Index lowest_trained_ = 0;
  std::vector<Mat> pre_, h_;
  Mat logits_, dh_, dpre_;
};

/// Mean softmax cross-entropy of logits against labels[offset ..], and its
/// gradient (p − onehot)/N into dlogits.
inline double cross_entropy(const Mat& logits, const std::vector<int>& labels, Index offset, Mat& dlogits) {
  const Index N = logits.rows();
  dlogits.resize(N, logits.cols());
  double loss = 0;
  for (Index i = 0; i < N; ++i) {
    const T top = logits.row(i).maxCoeff();
    const auto e = (logits.row(i).array() - top).exp();
    const T sum = e.sum();
    const int y = labels[static_cast<std::size_t>(offset + i)];
    loss -= std::log(static_cast<double>(e(y) / sum));
    dlogits.row(i) = e / (sum * static_cast<T>(N));
    dlogits(i, y) -= T(1) / static_cast<T>(N);
  }
  return loss / static_cast<double>(N);
}

inline double accuracy(Model& model, const Dataset& data, Index batch = 1000) {
  model.set_training(false);
  Index correct = 0;
  for (Index start = 0; start < data.size(); start += batch) {
    const Index n = std::min(batch, data.size() - start);
    const Mat& logits = model.forward(data.X.middleRows(start, n));
    for (Index i = 0; i < n; ++i) {
      Index arg;
      logits.row(i).maxCoeff(&arg);
      correct += arg == data.y[static_cast<std::size_t>(start + i)];
    }
  }
  model.set_training(true);
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

struct TrainOptions {
  Index epochs = 2;
  Index batch = 128;
  double lr = 1e-3;       ///< the adapters'
  double head_lr = 3e-2;  ///< the classifier head's, the same for every method
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  ///< per group (adapters, head)
  std::uint64_t seed = 0;
  /// Called after every step with (step, total steps, running loss).
  std::function<void(Index, Index, double)> progress;
  /// Data-parallel runs (--dist): this process's rank among `ranks`; each
  /// takes its share of every batch's rows.
  int rank = 0, ranks = 1;
  /// Data-parallel runs: called once with the two parameter groups (adapters,
  /// head) before training; returns what averages their gradients across the
  /// ranks, called after every backward.
  std::function<std::function<void()>(peft::optim::ParamSet<T>&, peft::optim::ParamSet<T>&)> distribute;
};

/// AdamW (one for the adapters, one for the head) with warmup + cosine decay
/// and gradient-norm clipping per group (so an adapter with large gradients,
/// such as SURM's symmetric Toeplitz, does not starve the head); returns the
/// mean loss of the last epoch.
inline double train(Model& model, const Dataset& data, const TrainOptions& o) {
  peft::optim::AdamW<T> adamw(model.adapter_parameters(), {.lr = o.lr, .weight_decay = o.weight_decay});
  peft::optim::AdamW<T> head(model.head_parameters(), {.lr = o.head_lr, .weight_decay = o.weight_decay});
  const Index per_epoch = (data.size() + o.batch - 1) / o.batch, total = per_epoch * o.epochs;
  const peft::optim::Schedule schedule(total, std::max<Index>(1, total / 20), peft::optim::Decay::Cosine);
  std::vector<Index> order(static_cast<std::size_t>(data.size()));
  peft::Rng rng(o.seed);
  const std::function<void()> average = o.distribute ? o.distribute(adamw.params(), head.params()) : nullptr;
  Mat X, dlogits;
  std::vector<int> y;
  double epoch_loss = 0;
  Index step = 0;
  for (Index epoch = 0; epoch < o.epochs; ++epoch) {
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Index>(i);
    for (std::size_t i = order.size(); i > 1; --i)  // Fisher–Yates with our seeded generator
      std::swap(order[i - 1], order[static_cast<std::size_t>(rng.next() % i)]);
    epoch_loss = 0;
    for (Index b = 0; b < per_epoch; ++b, ++step) {
      const Index start = b * o.batch, n = std::min(o.batch, data.size() - start);
      // This rank's rows of the batch (all of them in one process).
      const Index lo = n * o.rank / o.ranks, hi = n * (o.rank + 1) / o.ranks, local = hi - lo;
      X.resize(local, data.X.cols());
      y.resize(static_cast<std::size_t>(local));
      for (Index i = 0; i < local; ++i) {
        const Index src = order[static_cast<std::size_t>(start + lo + i)];
        X.row(i) = data.X.row(src);
        y[static_cast<std::size_t>(i)] = data.y[static_cast<std::size_t>(src)];
      }
      adamw.zero_grad();
      head.zero_grad();
      double loss = 0;
      if (local > 0) {
        loss = cross_entropy(model.forward(X), y, 0, dlogits);
        // The mean over this rank's rows, weighted so that the average over
        // ranks is the mean over the whole batch even when shares differ.
        dlogits *= static_cast<T>(static_cast<double>(local * o.ranks) / static_cast<double>(n));
        model.backward(dlogits);
      }
      if (average) average();
      if (adamw.params().size()) peft::optim::clip_grad_norm(adamw.params(), o.max_grad_norm);
      peft::optim::clip_grad_norm(head.params(), o.max_grad_norm);
      adamw.set_lr(o.lr * schedule.factor(step));
      head.set_lr(o.head_lr * schedule.factor(step));
      adamw.step();
      head.step();
      epoch_loss += loss * static_cast<double>(n);  // with --dist: this rank's rows' loss
      if (o.progress) o.progress(step + 1, total, epoch_loss / static_cast<double>(start + n));
    }
    epoch_loss /= static_cast<double>(data.size());
  }
  return epoch_loss;
}

/// A method whose adapter type A is built by `make(layer, d_in, d_out)` on every hidden layer.
template <class A>
Method method(std::string name, double lr, std::string peft_type,
              std::function<std::optional<A>(Index layer, Index d_in, Index d_out)> make,
              std::function<peft::io::PeftConfig()> config = {}) {
  Method m;
  m.name = std::move(name);
  m.lr = lr;
  m.peft_config = std::move(config);
  m.adapt = [make, peft_type](Index layer, peft::Linear<T> base,
                               Base storage) -> std::optional<peft::AdaptedLayer<T>> {
    auto adapter = make(layer, base.in_features(), base.out_features());
    if (!adapter) return std::nullopt;
    if (storage == Base::BF16)
      return peft::AdaptedLayer<T>(peft::Adapted<A, peft::LinearBF16>(peft::LinearBF16(base), std::move(*adapter)),
                                   peft_type);
    if (storage == Base::Int8)
      return peft::AdaptedLayer<T>(peft::Adapted<A, peft::LinearInt8>(peft::LinearInt8(base), std::move(*adapter)),
                                   peft_type);
    return peft::AdaptedLayer<T>(peft::Adapted<A>(std::move(base), std::move(*adapter)), peft_type);
  };
  return m;
}

/// Every method of the comparison, seeded. Each learning rate is the best of
/// a sweep over 1e-4 … 3 (steps of about 3x) on --quick runs, which
/// fine-tune 2 epochs (finetune_fashion_mnist --quick --lr-scale F); RED, IA3 and C3A
/// (whose ΔW is divided by d_in) want far larger rates than the LoRA family.
inline std::vector<Method> all_methods(std::uint64_t seed) {
  using namespace peft;
  std::vector<Method> methods;
  methods.push_back(method<Full<T>>("head only", 3e-3, "", [](Index, Index, Index) { return std::nullopt; }));
  methods.push_back(method<Full<T>>("full fine-tuning", 3e-2, "FULL",
                                    [](Index, Index i, Index o) { return Full<T>(i, o); }));
  for (const auto& [r, lr] : std::vector<std::pair<Index, double>>{{1, 3e-2}, {4, 3e-2}, {8, 1e-2}}) {
    const LoRAConfig c{.r = r, .alpha = 2.0 * static_cast<double>(r), .seed = seed};
    methods.push_back(method<LoRA<T>>(
        "LoRA r=" + std::to_string(r), lr, "LORA", [c](Index l, Index i, Index o) {
          auto cl = c;
          cl.seed += static_cast<std::uint64_t>(l);
          return LoRA<T>(i, o, cl);
        },
        [c] { return io::peft_config(c); }));
  }
  const std::vector<std::tuple<std::string, SURMConfig, double>> surms = {
      {"SURM circulant", {.structure = Structure::Circulant, .alpha = 1.0, .seed = seed}, 1e-2},
      {"SURM sym. Toeplitz", {.structure = Structure::SymToeplitz, .alpha = 1.0, .seed = seed}, 1e-3},
      {"SURM Kronecker r=16", {.structure = Structure::Kronecker, .rank = 16, .alpha = 16.0, .seed = seed}, 3e-2},
      {"SURM LDR rho=2", {.structure = Structure::LDR, .rank = 2, .alpha = 1.0, .seed = seed}, 3e-3}};
  for (const auto& [name, config, lr] : surms) {
    const SURMConfig c = config;  // a copy to capture: clang 14 cannot capture a structured binding
    methods.push_back(method<SURM<T>>(
        name, lr, "SURM", [c](Index l, Index i, Index o) {
          auto cl = c;
          cl.seed += static_cast<std::uint64_t>(l);
          return SURM<T>(i, o, cl);
        },
        [c] { return io::peft_config(c); }));
  }
  methods.push_back(method<RED<T>>("RED", 3e-1, "RED", [](Index, Index i, Index o) { return RED<T>(i, o); },
                                   [] { return io::peft_config(REDConfig{}); }));
  methods.push_back(method<IA3<T>>("IA3", 1.0, "IA3", [](Index, Index i, Index o) { return IA3<T>(i, o); },
                                   [] { return io::ia3_peft_config({}); }));
  const MELoRAConfig melora{.r = 2, .n = 4, .alpha = 4, .seed = seed};
  methods.push_back(method<MELoRA<T>>(
      "MELoRA 4x r=2", 3e-2, "MELORA", [melora](Index, Index i, Index o) { return MELoRA<T>(i, o, melora); },
      [melora] { return io::peft_config(melora); }));
  // LoRTA: one CP factor set shared by the square hidden layers (fc2, fc3).
  const LoRTAConfig lorta{.r = 8, .alpha = 16, .d = kHidden, .layers = 2, .matrix_types = 1, .seed = seed};
  auto factors = std::make_shared<std::shared_ptr<LoRTAFactors<T>>>();
  methods.push_back(method<LoRTA<T>>(
      "LoRTA r=8 (fc2, fc3)", 3e-2, "LORTA",
      [lorta, factors](Index l, Index, Index) -> std::optional<LoRTA<T>> {
        if (l == 0) {
          *factors = std::make_shared<LoRTAFactors<T>>(lorta);  // a fresh set per model
          return std::nullopt;
        }
        return LoRTA<T>(*factors, l - 1, 0);
      },
      [lorta] { return io::peft_config(lorta); }));
  const C3AConfig c3a{.block_size = 16, .seed = seed};
  methods.push_back(method<C3A<T>>("C3A b=16", 3.0, "C3A", [c3a](Index, Index i, Index o) { return C3A<T>(i, o, c3a); },
                                   [c3a] { return io::peft_config(c3a); }));
  return methods;
}

/// The classes [first, first + count) of a split, relabelled 0..count−1, at most `limit` rows.
inline Dataset select_classes(const Mat& X, const std::vector<int>& y, int first, int count, Index limit) {
  std::vector<Index> rows;
  for (std::size_t i = 0; i < y.size() && static_cast<Index>(rows.size()) < limit; ++i)
    if (y[i] >= first && y[i] < first + count) rows.push_back(static_cast<Index>(i));
  Dataset d;
  d.X.resize(static_cast<Index>(rows.size()), X.cols());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    d.X.row(static_cast<Index>(i)) = X.row(rows[i]);
    d.y.push_back(y[static_cast<std::size_t>(rows[i])] - first);
  }
  return d;
}

/// A randomly initialised backbone (nn.Linear init), seeded.
inline std::vector<peft::Linear<T>> random_backbone(std::uint64_t seed) {
  peft::Rng rng(seed);
  std::vector<peft::Linear<T>> layers;
  for (std::size_t l = 0; l + 1 < kWidths.size(); ++l)
    layers.push_back(peft::Linear<T>::random(kWidths[l], kWidths[l + 1], rng));
  return layers;
}

/// Pretrains every layer (Full adapters), then merges them into the backbone;
/// `test_accuracy` is the pretrained model's on `test`.
inline std::vector<peft::Linear<T>> pretrain(const Dataset& data, const Dataset& test, Index classes,
                                             const TrainOptions& options, double& test_accuracy) {
  Method full = all_methods(0)[1];
  Model model(random_backbone(options.seed), full, classes, options.seed + 1);
  train(model, data, options);
  test_accuracy = accuracy(model, test);
  std::vector<peft::Linear<T>> backbone;
  for (auto& layer : model.adapted()) {
    layer->merge();
    backbone.push_back(layer->base());
  }
  return backbone;
}

}  // namespace fmnist
