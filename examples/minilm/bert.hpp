#pragma once
// A BERT encoder for the MiniLM example (sentence-transformers'
// all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, FFN 1536), forward and
// hand-written backward, built from the library's public API: every linear
// layer is a peft::Linear that an adapter can wrap (peft::AdaptedLayer).
//
// What it computes is transformers' BertModel in eval mode (no dropout):
//   embeddings: word + position + token type 0, LayerNorm;
//   each layer: self-attention (12 heads, padded keys masked out, softmax
//   scaled by 1/√32), output projection, residual, LayerNorm; FFN with the
//   exact (erf) GELU, residual, LayerNorm;
// then mean pooling over the unmasked tokens (sentence-transformers' pooling).
// Backward runs from the pooled embedding's gradient down to the lowest
// layer that has an adapter; the embeddings, LayerNorms and unadapted
// projections stay frozen (their gradients are not computed).
//
// Hidden states are (sequences × length) × hidden, row-major: sequence b's
// token t is row b·length + t; head h is columns [h·32, h·32 + 32).

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <peft/peft.hpp>

// The attention loops run over (sequence, head) pairs on OpenMP's threads
// when the example is built with it (--threads); each pair writes only its own blocks.
#ifdef _OPENMP
#define MINILM_PARALLEL_FOR _Pragma("omp parallel for schedule(static)")
#else
#define MINILM_PARALLEL_FOR
#endif

namespace minilm {

using peft::Index;
template <class T>
using Mat = peft::Matrix<T>;
template <class T>
using Vec = peft::Vector<T>;

/// The fields of a BERT config.json this encoder reads; anything it does not
/// implement (another activation, relative positions) is refused.
struct BertConfig {
  Index vocab_size = 30522, hidden = 384, layers = 6, heads = 12, intermediate = 1536, max_positions = 512,
        type_vocab = 2;
  double layer_norm_eps = 1e-12;
  Index head_dim() const { return hidden / heads; }

  static BertConfig read(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("BertConfig::read: cannot open '" + path.string() + "'");
    const nlohmann::json j = nlohmann::json::parse(in);
    auto expect = [&](const char* key, const std::string& wanted) {
      const std::string got = j.value(key, wanted);
      if (got != wanted)
        throw std::runtime_error("BertConfig::read: " + std::string(key) + " must be '" + wanted + "', got '" + got +
                                 "' in " + path.string());
    };
    expect("model_type", "bert");
    expect("hidden_act", "gelu");
    expect("position_embedding_type", "absolute");
    BertConfig c;
    c.vocab_size = j.at("vocab_size").get<Index>();
    c.hidden = j.at("hidden_size").get<Index>();
    c.layers = j.at("num_hidden_layers").get<Index>();
    c.heads = j.at("num_attention_heads").get<Index>();
    c.intermediate = j.at("intermediate_size").get<Index>();
    c.max_positions = j.at("max_position_embeddings").get<Index>();
    c.type_vocab = j.at("type_vocab_size").get<Index>();
    c.layer_norm_eps = j.at("layer_norm_eps").get<double>();
    if (c.heads < 1 || c.hidden % c.heads != 0)
      throw std::runtime_error("BertConfig::read: hidden_size " + std::to_string(c.hidden) +
                               " must be a multiple of num_attention_heads " + std::to_string(c.heads));
    return c;
  }
};

/// A batch of token ids, each sequence padded to `length`; mask 1 for real tokens.
struct TokenBatch {
  Index sequences = 0, length = 0;
  std::vector<std::int32_t> ids, mask;  ///< sequences × length, row-major
};

/// LayerNorm over the last dimension with frozen weight and bias; keeps the
/// normalised input for backward (the input gradient only).
template <class T>
class LayerNorm {
 public:
  LayerNorm(Vec<T> weight, Vec<T> bias, double eps) : weight_(std::move(weight)), bias_(std::move(bias)), eps_(eps) {}

  void forward(const Mat<T>& X, Mat<T>& Y) {
    const Index n = X.cols();
    normalised_.resize(X.rows(), n);
    inv_std_.resize(X.rows());
    Y.resize(X.rows(), n);
    MINILM_PARALLEL_FOR
    for (Index i = 0; i < X.rows(); ++i) {
      const T mean = X.row(i).mean();
      const T var = (X.row(i).array() - mean).square().mean();  // biased, as torch
      inv_std_(i) = T(1) / std::sqrt(var + static_cast<T>(eps_));
      normalised_.row(i) = (X.row(i).array() - mean) * inv_std_(i);
      Y.row(i) = normalised_.row(i).array() * weight_.transpose().array() + bias_.transpose().array();
    }
  }

  /// dX for dY of the last forward.
  void backward(const Mat<T>& dY, Mat<T>& dX) const {
    const T n = static_cast<T>(dY.cols());
    dX.resize(dY.rows(), dY.cols());
    MINILM_PARALLEL_FOR
    for (Index i = 0; i < dY.rows(); ++i) {
      const auto g = dY.row(i).array() * weight_.transpose().array();  // dL/d(normalised)
      const T mean_g = g.sum() / n, mean_gx = (g * normalised_.row(i).array()).sum() / n;
      dX.row(i) = inv_std_(i) * (g - mean_g - normalised_.row(i).array() * mean_gx);
    }
  }

 private:
  Vec<T> weight_, bias_;
  double eps_;
  Mat<T> normalised_;
  Vec<T> inv_std_;
};

/// One linear layer of the encoder: frozen, or wrapped by an adapter.
template <class T>
class Projection {
 public:
  explicit Projection(peft::Linear<T> base) : base_(std::move(base)) {}

  /// Wraps the layer: `make` receives the frozen Linear and returns the adapted layer.
  void adapt(const std::function<peft::AdaptedLayer<T>(peft::Linear<T>)>& make) {
    if (adapted_) throw std::logic_error("Projection::adapt: the layer already has an adapter");
    adapted_.emplace(make(std::move(base_)));
  }
  bool adapted() const { return adapted_.has_value(); }
  peft::AdaptedLayer<T>& adapter_layer() { return *adapted_; }
  const peft::Linear<T>& base() const { return adapted_ ? adapted_->base() : base_; }

  void forward(const Mat<T>& X, Mat<T>& Y) {
    if (adapted_) adapted_->forward(X, Y);
    else base_.forward(X, Y);
  }
  /// dX for dY (and, when adapted, the adapter's gradients).
  void backward(const Mat<T>& dY, Mat<T>& dX) {
    if (adapted_) adapted_->backward(dY, dX);
    else base_.backward(dY, dX);
  }

 private:
  peft::Linear<T> base_;  // moved into adapted_ when adapted
  std::optional<peft::AdaptedLayer<T>> adapted_;
};

/// Names of a layer's six linear layers, as in transformers' BertLayer (and
/// in PEFT's target_modules): query, key, value, attention output (dense),
/// intermediate (dense), output (dense).
enum class Module { Query, Key, Value, AttentionOutput, Intermediate, Output };
inline constexpr int kLinears = 6;
inline const char* module_name(Module which) {
  static const char* const names[] = {"attention.self.query",   "attention.self.key",  "attention.self.value",
                                      "attention.output.dense", "intermediate.dense", "output.dense"};
  return names[static_cast<int>(which)];
}

/// One transformer layer: attention + FFN, post-LayerNorm (BERT).
template <class T>
class EncoderLayer {
 public:
  EncoderLayer(const BertConfig& config, std::vector<Projection<T>> linears, LayerNorm<T> attention_norm,
               LayerNorm<T> output_norm)
      : config_(config),
        linears_(std::move(linears)),
        attention_norm_(std::move(attention_norm)),
        output_norm_(std::move(output_norm)) {}

  Projection<T>& linear(Module which) { return linears_[static_cast<std::size_t>(which)]; }

  /// Y from X (rows: tokens); keeps what backward needs.
  void forward(const Mat<T>& X, const TokenBatch& batch, Mat<T>& Y) {
    linear(Module::Query).forward(X, q_);
    linear(Module::Key).forward(X, k_);
    linear(Module::Value).forward(X, v_);
    attend(batch);
    linear(Module::AttentionOutput).forward(context_, a_);
    a_ += X;
    attention_norm_.forward(a_, h1_);
    linear(Module::Intermediate).forward(h1_, i_);
    peft::detail::activation_into(peft::Activation::GELU, i_, g_, /*add=*/false);  // vectorised erf
    linear(Module::Output).forward(g_, o_);
    o_ += h1_;
    output_norm_.forward(o_, Y);
  }

  /// dX from dY of the last forward; adds into the adapters' gradients.
  /// Without `input_gradient` (the lowest layer trained, over frozen
  /// embeddings) dX is left alone, and the query, key and value projections
  /// run backward only where an adapter needs its gradients.
  void backward(const Mat<T>& dY, const TokenBatch& batch, Mat<T>& dX, bool input_gradient = true) {
    output_norm_.backward(dY, do_);  // d(o_ before the norm): to the FFN and to h1 (residual)
    linear(Module::Output).backward(do_, di_);
    peft::detail::multiply_by_derivative(peft::Activation::GELU, i_, di_);
    linear(Module::Intermediate).backward(di_, dh1_);
    dh1_ += do_;
    attention_norm_.backward(dh1_, da_);  // to the attention output and to X (residual)
    linear(Module::AttentionOutput).backward(da_, dcontext_);
    const bool key_gradient = input_gradient || linear(Module::Key).adapted();
    attend_backward(batch, key_gradient);
    if (input_gradient) std::swap(dX, da_);
    const Mat<T>* upstream[] = {&dq_, &dk_, &dv_};
    for (const Module which : {Module::Query, Module::Key, Module::Value}) {
      if (!input_gradient && !linear(which).adapted()) continue;
      linear(which).backward(*upstream[static_cast<int>(which)], dtmp_);
      if (input_gradient) dX += dtmp_;
    }
  }

 private:
  // context = softmax(Q Kᵀ/√d_head + mask) V per sequence and head; the
  // probabilities are kept, one L × L block per (sequence, head).
  void attend(const TokenBatch& batch) {
    const Index L = batch.length, dh = config_.head_dim(), H = config_.heads;
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    context_.resize(q_.rows(), q_.cols());
    probs_.resize(batch.sequences * H * L, L);
    // 0 for a real key, -inf for padding: exp() then gives a masked key
    // exactly 0, as exp(score + finfo.min) does in transformers.
    key_bias_.resize(batch.sequences, L);
    for (Index b = 0; b < batch.sequences; ++b)
      for (Index j = 0; j < L; ++j)
        key_bias_(b, j) = batch.mask[static_cast<std::size_t>(b * L + j)] ? T(0) : -std::numeric_limits<T>::infinity();
    MINILM_PARALLEL_FOR
    for (Index bh = 0; bh < batch.sequences * H; ++bh) {
      const Index b = bh / H, h = bh % H;
      auto P = probs_.middleRows(bh * L, L);
      P.noalias() = scale * q_.block(b * L, h * dh, L, dh) * k_.block(b * L, h * dh, L, dh).transpose();
      for (Index i = 0; i < L; ++i) {  // rows are contiguous: Eigen's vectorised exp
        auto row = P.row(i).array();
        row += key_bias_.row(b).array();
        row = (row - row.maxCoeff()).exp();
        row /= row.sum();
      }
      context_.block(b * L, h * dh, L, dh).noalias() = P * v_.block(b * L, h * dh, L, dh);
    }
  }

  // dq_, dv_ (and dk_ when asked) from dcontext_.
  void attend_backward(const TokenBatch& batch, bool key_gradient) {
    const Index L = batch.length, dh = config_.head_dim(), H = config_.heads;
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    dq_.resize(q_.rows(), q_.cols());
    dk_.resize(k_.rows(), k_.cols());
    dv_.resize(v_.rows(), v_.cols());
    dscores_.resize(probs_.rows(), probs_.cols());
    MINILM_PARALLEL_FOR
    for (Index bh = 0; bh < batch.sequences * H; ++bh) {
      const Index b = bh / H, h = bh % H;
      const auto P = probs_.middleRows(bh * L, L);
      const auto dC = dcontext_.block(b * L, h * dh, L, dh);
      auto dS = dscores_.middleRows(bh * L, L);
      dv_.block(b * L, h * dh, L, dh).noalias() = P.transpose() * dC;
      dS.noalias() = dC * v_.block(b * L, h * dh, L, dh).transpose();
      // softmax backward: dS = P ∘ (dP − rowsum(dP ∘ P)); then the 1/√d_head scale.
      for (Index i = 0; i < L; ++i) {
        const T dot = dS.row(i).dot(P.row(i));
        dS.row(i).array() = P.row(i).array() * (dS.row(i).array() - dot) * scale;
      }
      dq_.block(b * L, h * dh, L, dh).noalias() = dS * k_.block(b * L, h * dh, L, dh);
      if (key_gradient) dk_.block(b * L, h * dh, L, dh).noalias() = dS.transpose() * q_.block(b * L, h * dh, L, dh);
    }
  }

  BertConfig config_;
  std::vector<Projection<T>> linears_;
  LayerNorm<T> attention_norm_, output_norm_;
  Mat<T> q_, k_, v_, context_, probs_, key_bias_, a_, h1_, i_, g_, o_;
  Mat<T> do_, di_, dh1_, da_, dcontext_, dq_, dk_, dv_, dscores_, dtmp_;
};

/// The encoder with mean pooling: token ids → one embedding per sequence.
template <class T>
class BertEncoder {
 public:
  /// Reads config.json and model.safetensors from a BERT model directory
  /// (tensor names as BertModel saves them, without a "bert." prefix).
  static BertEncoder load(const std::filesystem::path& model_dir) {
    const BertConfig config = BertConfig::read(model_dir / "config.json");
    const peft::io::Safetensors st = peft::io::read_safetensors(model_dir / "model.safetensors");
    auto matrix = [&](const std::string& name, Index rows, Index cols) {
      Mat<T> m = st.at(name).template to_matrix<T>();
      if (m.rows() != rows || m.cols() != cols)
        throw std::runtime_error("BertEncoder::load: " + name + " must be " + std::to_string(rows) + " x " +
                                 std::to_string(cols) + ", got " + std::to_string(m.rows()) + " x " +
                                 std::to_string(m.cols()));
      return m;
    };
    auto vector = [&](const std::string& name, Index size) -> Vec<T> {
      return matrix(name, 1, size).transpose();
    };
    auto norm = [&](const std::string& prefix) {
      return LayerNorm<T>(vector(prefix + ".weight", config.hidden), vector(prefix + ".bias", config.hidden),
                          config.layer_norm_eps);
    };
    BertEncoder e(config, matrix("embeddings.word_embeddings.weight", config.vocab_size, config.hidden),
                  matrix("embeddings.position_embeddings.weight", config.max_positions, config.hidden),
                  matrix("embeddings.token_type_embeddings.weight", config.type_vocab, config.hidden),
                  norm("embeddings.LayerNorm"));
    for (Index l = 0; l < config.layers; ++l) {
      const std::string prefix = "encoder.layer." + std::to_string(l) + ".";
      std::vector<Projection<T>> linears;
      for (int which = 0; which < kLinears; ++which) {
        const std::string name = prefix + module_name(static_cast<Module>(which));
        const bool up = which == static_cast<int>(Module::Intermediate), down = which == static_cast<int>(Module::Output);
        const Index d_out = up ? config.intermediate : config.hidden, d_in = down ? config.intermediate : config.hidden;
        linears.emplace_back(peft::Linear<T>(matrix(name + ".weight", d_out, d_in), vector(name + ".bias", d_out)));
      }
      e.layers_.emplace_back(config, std::move(linears), norm(prefix + "attention.output.LayerNorm"),
                             norm(prefix + "output.LayerNorm"));
    }
    return e;
  }

  const BertConfig& config() const { return config_; }
  Index layers() const { return static_cast<Index>(layers_.size()); }
  EncoderLayer<T>& layer(Index l) { return layers_.at(static_cast<std::size_t>(l)); }

  /// Puts an adapter on linear layer `which` of layer `l`; `make` receives the frozen Linear.
  void adapt(Index l, Module which, const std::function<peft::AdaptedLayer<T>(peft::Linear<T>)>& make) {
    layer(l).linear(which).adapt(make);
    lowest_adapted_ = std::min(lowest_adapted_, l);
  }

  /// Every adapted linear layer, layer by layer in Module order.
  std::vector<peft::AdaptedLayer<T>*> adapted_layers() {
    std::vector<peft::AdaptedLayer<T>*> out;
    for (auto& layer : layers_)
      for (int which = 0; which < kLinears; ++which)
        if (layer.linear(static_cast<Module>(which)).adapted())
          out.push_back(&layer.linear(static_cast<Module>(which)).adapter_layer());
    return out;
  }

  /// Training (adapters' dropout on) or evaluation; the encoder itself has no dropout.
  void set_training(bool training) {
    for (auto* layer : adapted_layers()) layer->set_training(training);
  }

  /// The mean-pooled embeddings (sequences × hidden) of a batch; keeps what backward needs.
  const Mat<T>& forward(const TokenBatch& batch) {
    check(batch);
    batch_ = batch;
    const Index L = batch.length, d = config_.hidden;
    embedded_.resize(batch.sequences * L, d);
    for (Index b = 0; b < batch.sequences; ++b)
      for (Index t = 0; t < L; ++t)
        embedded_.row(b * L + t) = word_.row(batch.ids[static_cast<std::size_t>(b * L + t)]) + position_.row(t) +
                                  token_type_.row(0);
    hidden_.resize(layers_.size() + 1);
    embedding_norm_.forward(embedded_, hidden_[0]);
    for (std::size_t l = 0; l < layers_.size(); ++l) layers_[l].forward(hidden_[l], batch, hidden_[l + 1]);
    pooled_.setZero(batch.sequences, d);
    for (Index b = 0; b < batch.sequences; ++b) {
      Index count = 0;
      for (Index t = 0; t < L; ++t)
        if (batch.mask[static_cast<std::size_t>(b * L + t)]) {
          pooled_.row(b) += hidden_.back().row(b * L + t);
          ++count;
        }
      pooled_.row(b) /= static_cast<T>(count);
    }
    return pooled_;
  }

  /// The last hidden states (tokens × hidden) of the last forward.
  const Mat<T>& last_hidden() const { return hidden_.back(); }

  /// Backward from the pooled embeddings' gradient, down to the lowest adapted
  /// layer; adds into every adapter's gradients.
  void backward(const Mat<T>& dpooled) {
    const Index L = batch_.length;
    if (dpooled.rows() != batch_.sequences || dpooled.cols() != config_.hidden)
      throw std::invalid_argument("BertEncoder::backward: dpooled must be " + std::to_string(batch_.sequences) +
                                  " x " + std::to_string(config_.hidden));
    dh_.setZero(batch_.sequences * L, config_.hidden);
    for (Index b = 0; b < batch_.sequences; ++b) {
      Index count = 0;
      for (Index t = 0; t < L; ++t) count += batch_.mask[static_cast<std::size_t>(b * L + t)] != 0;
      for (Index t = 0; t < L; ++t)
        if (batch_.mask[static_cast<std::size_t>(b * L + t)]) dh_.row(b * L + t) = dpooled.row(b) / static_cast<T>(count);
    }
    for (Index l = layers() - 1; l >= lowest_adapted_; --l) {
      // Below the lowest adapted layer everything is frozen: no gradient goes there.
      layers_[static_cast<std::size_t>(l)].backward(dh_, batch_, dnext_, /*input_gradient=*/l > lowest_adapted_);
      std::swap(dh_, dnext_);
    }
  }

 private:
  BertEncoder(const BertConfig& config, Mat<T> word, Mat<T> position, Mat<T> token_type, LayerNorm<T> norm)
      : config_(config),
        word_(std::move(word)),
        position_(std::move(position)),
        token_type_(std::move(token_type)),
        embedding_norm_(std::move(norm)),
        lowest_adapted_(config.layers) {}

  void check(const TokenBatch& batch) const {
    const auto cells = static_cast<std::size_t>(batch.sequences * batch.length);
    if (batch.sequences < 1 || batch.length < 1 || batch.length > config_.max_positions || batch.ids.size() != cells ||
        batch.mask.size() != cells)
      throw std::invalid_argument("BertEncoder::forward: expected ids and mask of sequences x length entries, "
                                  "1 <= length <= " + std::to_string(config_.max_positions));
    for (Index b = 0; b < batch.sequences; ++b) {
      bool any = false;
      for (Index t = 0; t < batch.length; ++t) {
        const std::int32_t id = batch.ids[static_cast<std::size_t>(b * batch.length + t)];
        if (id < 0 || id >= config_.vocab_size)
          throw std::invalid_argument("BertEncoder::forward: token id " + std::to_string(id) + " outside [0, " +
                                      std::to_string(config_.vocab_size) + ")");
        any = any || batch.mask[static_cast<std::size_t>(b * batch.length + t)] != 0;
      }
      if (!any) throw std::invalid_argument("BertEncoder::forward: sequence " + std::to_string(b) + " has no token");
    }
  }

  BertConfig config_;
  Mat<T> word_, position_, token_type_;
  LayerNorm<T> embedding_norm_;
  std::vector<EncoderLayer<T>> layers_;
  Index lowest_adapted_;
  TokenBatch batch_;
  std::vector<Mat<T>> hidden_;
  Mat<T> embedded_, pooled_, dh_, dnext_;
};

}  // namespace minilm
