// A user's program: the whole public API through <peft/peft.hpp>, in float and
// double, built with a strict user's flags (see CMakeLists.txt: -Wall -Wextra
// -Wpedantic -Werror, -march=native, -O2), so that every header instantiation
// a user can reach must compile warning-free. It also checks what it runs:
//   - double: dL/dX and dL/dθ of L = Σ G ⊙ Y along random directions against
//     central differences; float: Y, dX and every gradient against the same
//     layer in double,
//   - Y − base(X) = X·ΔWᵀ (+ a constant row: LoRA's and Full's bias) with the
//     adapter's delta_weight(),
//   - merge: the merged layer gives the same Y and dX; unmerge restores W and b,
//   - training with SGD and AdamW (schedule, clipping) lowers the loss,
//   - save_peft/load_peft to a temporary directory gives the same layer back.
// Sizes reach the FFT engine's vectorised paths (n = 64, 256, 1024; 19 rows:
// a full panel and a ragged one in both precisions). Exits non-zero on a failure.
#include <peft/peft.hpp>
#include <peft/testing/gradcheck.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace peft;

int failures = 0;
int checks = 0;

void expect(bool ok, const std::string& what, double value = 0, double limit = 0) {
  ++checks;
  if (ok) return;
  ++failures;
  std::fprintf(stderr, "consumer: FAILED %s (%.3g, limit %.3g)\n", what.c_str(), value, limit);
}

template <class A, class B>
void expect_close(const A& got, const B& want, double tol, const std::string& what) {
  const double err = testing::relative_error(got, want);
  expect(err < tol, what, err, tol);  // a NaN fails too
}

/// Per-precision tolerance of results that are O(n) sums.
template <class T>
constexpr double kTol = std::is_same_v<T, float> ? 2e-4 : 1e-11;

template <class T>
const char* precision() {
  return std::is_same_v<T, float> ? "float" : "double";
}

template <class T>
Matrix<T> random_matrix(Index rows, Index cols, Rng& rng, double std = 1.0) {
  Matrix<T> m(rows, cols);
  init::normal(m, std, rng);
  return m;
}

/// Moves every parameter off its init (many start at zero, ΔW = 0).
template <class T>
void perturb(std::vector<Parameter<T>> params, Rng& rng) {
  for (auto& p : params) p.value += random_matrix<T>(p.value.rows(), p.value.cols(), rng, 0.1);
}

template <class Layer>
double loss(Layer& layer, const auto& X, const auto& G) {
  return (layer.forward(X).array() * G.array()).template cast<double>().sum();
}

/// double: dL along a random direction of X and of all parameters against
/// central differences (step 1e-5).
template <class A>
void check_gradients(Adapted<A>& layer, const Matrix<double>& X, const Matrix<double>& G, Rng& rng,
                     const std::string& name) {
  const double h = 1e-5, tol = 1e-6;
  layer.adapter().zero_grad();
  layer.forward(X);
  const Matrix<double> dX = layer.backward(G);
  const Matrix<double> U = random_matrix<double>(X.rows(), X.cols(), rng);
  const Matrix<double> up = X + h * U, down = X - h * U;
  const double numeric_x = (loss(layer, up, G) - loss(layer, down, G)) / (2 * h);
  expect_close(Vector<double>::Constant(1, (dX.array() * U.array()).sum()), Vector<double>::Constant(1, numeric_x),
               tol, name + ": dX along a direction");

  auto params = layer.adapter().parameters();
  std::vector<Matrix<double>> directions;
  double analytic = 0;
  for (const auto& p : params) {
    directions.push_back(random_matrix<double>(p.value.rows(), p.value.cols(), rng));
    analytic += (p.grad.array() * directions.back().array()).sum();
  }
  auto shift = [&](double by) {
    for (std::size_t i = 0; i < params.size(); ++i) params[i].value += by * directions[i];
  };
  shift(h);
  const double plus = loss(layer, X, G);
  shift(-2 * h);
  const double minus = loss(layer, X, G);
  shift(h);
  expect_close(Vector<double>::Constant(1, analytic), Vector<double>::Constant(1, (plus - minus) / (2 * h)), tol,
               name + ": parameter gradients along a direction");
}

/// float: Y, dX and the parameter gradients against the same layer in double
/// (`make` builds it; base and parameters are copied over).
template <class A, class Make>
void check_against_double(Adapted<A>& layer, const Matrix<float>& X, const Matrix<float>& G, Make& make,
                          const std::string& name) {
  Rng unused(0);
  auto twin = make.template operator()<double>(unused);
  twin.base().weight() = layer.base().weight().template cast<double>();
  twin.base().bias() = layer.base().bias().template cast<double>();
  auto ours = layer.adapter().parameters();
  auto theirs = twin.adapter().parameters();
  for (std::size_t i = 0; i < ours.size(); ++i) theirs[i].value = ours[i].value.template cast<double>();
  layer.adapter().zero_grad();
  twin.adapter().zero_grad();
  const Matrix<float> Y = layer.forward(X), dX = layer.backward(G);
  const Matrix<double> Y64 = twin.forward(X.cast<double>()), dX64 = twin.backward(G.cast<double>());
  expect_close(Y, Y64, 1e-4, name + ": Y as in double");
  expect_close(dX, dX64, 1e-3, name + ": dX as in double");
  for (std::size_t i = 0; i < ours.size(); ++i)
    expect_close(ours[i].grad, theirs[i].grad, 1e-3, name + ": gradient of " + std::string(ours[i].name) + " as in double");
}

/// Forward, backward and their gradients; for adapters linear in X, Y and ΔW
/// agree; mergeable ones give the same Y and dX merged and unmerge exactly.
/// `make` is a template lambda building the layer in a given precision.
template <class T, class Make>
void check_layer(const std::string& what, Make make, Rng& rng, Index rows = 19) {
  auto layer = make.template operator()<T>(rng);
  using A = std::remove_cvref_t<decltype(layer.adapter())>;
  const std::string name = what + " <" + precision<T>() + ">";
  perturb(layer.adapter().parameters(), rng);
  const Matrix<T> X = random_matrix<T>(rows, layer.in_features(), rng);
  const Matrix<T> G = random_matrix<T>(rows, layer.out_features(), rng);
  const Matrix<T> Y = layer.forward(X);
  const Matrix<T> dX = layer.backward(G);
  expect(Y.allFinite() && dX.allFinite(), name + ": finite forward and backward");
  if constexpr (std::is_same_v<T, double>) check_gradients(layer, X, G, rng, name);
  else check_against_double(layer, X, G, make, name);

  if constexpr (HasDeltaWeight<A>) {
    const Matrix<T> dW = layer.adapter().delta_weight();
    const Matrix<T> delta = Y - layer.base().forward(X);
    const Matrix<T> rest = delta - X * dW.transpose();  // a bias adds the same row to every row
    const Matrix<T> uneven = rest.rowwise() - rest.row(0);
    expect(uneven.norm() < kTol<T> * delta.norm(), name + ": Y - base(X) = X·ΔWᵀ + a constant row",
           uneven.norm() / delta.norm(), kTol<T>);
  }
  if constexpr (Mergeable<A>) {
    const Matrix<T> W = layer.base().weight();
    const Vector<T> b = layer.base().bias();
    layer.merge();
    expect_close(layer.forward(X), Y, kTol<T>, name + ": merged forward");
    expect_close(layer.base().backward(G), dX, kTol<T>, name + ": merged dX = G·W'");
    layer.unmerge();
    expect_close(layer.base().weight(), W, kTol<T>, name + ": unmerge restores W");
    expect(layer.base().bias().size() == b.size(), name + ": unmerge keeps the bias' presence");
    if (b.size() != 0) expect_close(layer.base().bias(), b, kTol<T>, name + ": unmerge restores b");
    expect_close(layer.forward(X), Y, kTol<T>, name + ": forward after unmerge");
  }
}

template <class T, class A>
Adapted<A> over(Index d_in, Index d_out, A adapter, Rng& rng) {
  return Adapted<A>(Linear<T>::random(d_in, d_out, rng), std::move(adapter));
}

const char* structure_name(Structure s) {
  switch (s) {
    case Structure::Circulant: return "Circulant";
    case Structure::CirculantSingle: return "CirculantSingle";
    case Structure::SymToeplitz: return "SymToeplitz";
    case Structure::Toeplitz: return "Toeplitz";
    case Structure::Kronecker: return "Kronecker";
    case Structure::LDR: return "LDR";
  }
  return "?";
}

template <class T>
void check_adapters(Rng& rng) {
  check_layer<T>("LoRA rsLoRA lora_bias", []<class S>(Rng& r) {
    return over<S>(256, 64, LoRA<S>(256, 64, {.r = 8, .alpha = 16, .rslora = true, .lora_bias = true}), r);
  }, rng);
  check_layer<T>("LoRA init None", []<class S>(Rng& r) {
    return over<S>(64, 1024, LoRA<S>(64, 1024, {.r = 4, .init = LoRAInit::None}), r);
  }, rng);
  check_layer<T>("MELoRA", []<class S>(Rng& r) { return over<S>(256, 128, MELoRA<S>(256, 128, {.r = 4, .n = 4}), r); },
                 rng);
  check_layer<T>("LoKr", []<class S>(Rng& r) {
    return over<S>(256, 64, LoKr<S>(256, 64, {.r = 4, .init = LoKrInit::Random}), r);
  }, rng);
  check_layer<T>("LoKr decompose_both", []<class S>(Rng& r) {
    return over<S>(1024, 256, LoKr<S>(1024, 256, {.r = 2, .decompose_both = true, .init = LoKrInit::Lycoris}), r);
  }, rng);
  check_layer<T>("LoRTA", []<class S>(Rng& r) {
    auto factors = std::make_shared<LoRTAFactors<S>>(
        LoRTAConfig{.r = 4, .alpha = 8, .d = 64, .heads = 4, .layers = 2, .matrix_types = 2, .seed = 3});
    return over<S>(64, 64, LoRTA<S>(factors, 1, 0), r);
  }, rng);
  check_layer<T>("C3A b = 64", []<class S>(Rng& r) {
    return over<S>(128, 192, C3A<S>(128, 192, {.block_size = 64}), r);
  }, rng);
  check_layer<T>("C3A b = 1024", []<class S>(Rng& r) {
    return over<S>(1024, 1024, C3A<S>(1024, 1024, {.block_size = 1024}), r);
  }, rng);
  check_layer<T>("C3A b = 256 zeros", []<class S>(Rng& r) {
    return over<S>(512, 256, C3A<S>(512, 256, {.block_size = 256, .init = C3AInit::Zeros}), r);
  }, rng);

  // Square (no padding), padded (d_in != d_out through n = max) and natively rectangular.
  struct Case {
    Structure structure;
    Index d_in, d_out, rank;
  };
  const Case surm[] = {
      {Structure::Circulant, 1024, 1024, 1}, {Structure::Circulant, 256, 192, 1},
      {Structure::CirculantSingle, 64, 64, 1}, {Structure::CirculantSingle, 48, 64, 1},
      {Structure::SymToeplitz, 256, 256, 1}, {Structure::SymToeplitz, 64, 40, 1},
      {Structure::Toeplitz, 1024, 256, 1},   {Structure::Kronecker, 256, 64, 8},
      {Structure::LDR, 256, 256, 2},         {Structure::LDR, 1024, 1024, 1},
      {Structure::LDR, 64, 100, 3},
  };
  for (const Case& c : surm)
    check_layer<T>(std::string("SURM ") + structure_name(c.structure) + " " + std::to_string(c.d_in) + " -> " +
                       std::to_string(c.d_out),
                   [c]<class S>(Rng& r) {
                     return over<S>(c.d_in, c.d_out,
                                    SURM<S>(c.d_in, c.d_out, {.structure = c.structure, .rank = c.rank, .alpha = 0.5}), r);
                   },
                   rng);
  for (const Structure s : {Structure::Circulant, Structure::CirculantSingle, Structure::SymToeplitz,
                            Structure::Toeplitz, Structure::Kronecker, Structure::LDR})
    check_layer<T>(std::string("SURMAdapter ") + structure_name(s), [s]<class S>(Rng& r) {
      const Index rank = s == Structure::Kronecker ? 16 : 2;
      return over<S>(128, 256, SURMAdapter<S>(128, 256, {.structure = s, .rank = rank, .alpha = 0.5}), r);
    }, rng);
  check_layer<T>("SURMAdapter LDR ReLU", []<class S>(Rng& r) {
    return over<S>(64, 64, SURMAdapter<S>(64, 64, {.structure = Structure::LDR, .rank = 2, .activation = Activation::ReLU}),
                   r);
  }, rng);
  check_layer<T>("Houlsby", []<class S>(Rng& r) {
    return over<S>(256, 128, Houlsby<S>(256, 128, {.bottleneck = 16}), r);
  }, rng);
  check_layer<T>("Houlsby identity", []<class S>(Rng& r) {
    return over<S>(64, 64, Houlsby<S>(64, 64, {.bottleneck = 8, .activation = Activation::Identity}), r);
  }, rng);
  check_layer<T>("RED", []<class S>(Rng& r) { return over<S>(64, 256, RED<S>(64, 256), r); }, rng);
  check_layer<T>("RED scale only", []<class S>(Rng& r) { return over<S>(64, 32, RED<S>(64, 32, {.bias = false}), r); },
                 rng);
  check_layer<T>("IA3", []<class S>(Rng& r) { return over<S>(64, 256, IA3<S>(64, 256), r); }, rng);
  check_layer<T>("IA3 feedforward", []<class S>(Rng& r) {
    return over<S>(256, 64, IA3<S>(256, 64, {.feedforward = true}), r);
  }, rng);
  check_layer<T>("Full", []<class S>(Rng& r) { return over<S>(64, 32, Full<S>(64, 32), r); }, rng);
}

/// Fits a LoRA layer to a teacher of rank 4 with an optimizer; the loss must fall.
template <class T, class Optimizer, class Options>
void check_training(const char* name, const Options& options, Rng& rng) {
  const Index d = 64, N = 32;
  auto layer = over<T>(d, d, LoRA<T>(d, d, {.r = 4, .alpha = 4}), rng);
  const Matrix<T> W = layer.base().weight() + random_matrix<T>(d, 4, rng, 0.3) * random_matrix<T>(4, d, rng, 0.3);
  const Linear<T> teacher(W, layer.base().bias());
  const Matrix<T> X = random_matrix<T>(N, d, rng), target = teacher.forward(X);
  optim::ParamSet<T> params{layer.adapter().parameters()};
  Optimizer optimizer(params, options);
  const optim::Schedule schedule(60, 5, optim::Decay::Cosine);
  double first = 0, last = 0;
  for (Index step = 0; step < 60; ++step) {
    optimizer.set_lr(options.lr * schedule.factor(step));
    optimizer.zero_grad();
    const Matrix<T> R = layer.forward(X) - target;
    last = 0.5 * static_cast<double>(R.squaredNorm()) / N;
    if (step == 0) first = last;
    layer.backward(R / static_cast<T>(N));
    optim::clip_grad_norm(optimizer.params(), 10.0);
    optimizer.step();
  }
  expect(last < 0.5 * first, std::string(name) + " <" + precision<T>() + ">: training lowers the loss", last / first, 0.5);
}

template <class T>
void check_optimizers(Rng& rng) {
  check_training<T, optim::SGD<T>>("SGD", optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true}, rng);
  check_training<T, optim::AdamW<T>>("AdamW", optim::AdamWOptions{.lr = 2e-2, .weight_decay = 0.0}, rng);
  // Layers over one LoRTA factor set: the set steps each shared tensor once.
  auto factors = std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.d = 32, .heads = 2});
  Adapted<LoRTA<T>> q(Linear<T>::random(32, 32, rng), LoRTA<T>(factors, 0, 0));
  Adapted<LoRTA<T>> v(Linear<T>::random(32, 32, rng), LoRTA<T>(factors, 0, 2));
  const optim::ParamSet<T> shared{q.adapter().parameters(), v.adapter().parameters()};
  expect(shared.size() == 5 && shared.num_params() == factors->num_params(), "ParamSet keeps shared tensors once");
}

/// save_peft, then load_peft and wrap: the same layer (same Y) comes back.
template <class T, class A>
void check_round_trip(const std::string& what, std::vector<Adapted<A>*> layers, const io::PeftConfig& config,
                      const std::filesystem::path& dir, Rng& rng) {
  for (const char* dtype : {"F32", "F64"}) {
    const std::string name = what + " <" + precision<T>() + "> as " + dtype;
    std::vector<io::SavedModule<T>> modules;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      names.push_back("model.layers." + std::to_string(i) + ".fc");
      modules.emplace_back(names.back(), *layers[i]);
    }
    io::save_peft<T>(dir, config, modules, {.dtype = dtype});
    const auto loaded = io::load_peft<T>(dir);
    expect(loaded.modules() == names, name + ": the saved modules are listed");
    // F32 files of double parameters round them to float.
    const double tol = std::is_same_v<T, double> && std::string(dtype) == "F32" ? 1e-6 : 1e-14;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      auto again = loaded.wrap(names[i], layers[i]->base());
      const Matrix<T> X = random_matrix<T>(3, layers[i]->in_features(), rng);
      expect_close(again.forward(X), layers[i]->forward(X), tol, name + ": reloaded forward");
      if constexpr (HasDeltaWeight<A>)
        expect_close(again.delta_weight(), layers[i]->adapter().delta_weight(), tol, name + ": reloaded ΔW");
    }
  }
}

template <class T, class A, class Config>
void round_trip_one(const std::string& what, Index d_in, Index d_out, A adapter, const Config& config,
                    const std::filesystem::path& dir, Rng& rng) {
  auto layer = over<T>(d_in, d_out, std::move(adapter), rng);
  perturb(layer.adapter().parameters(), rng);
  check_round_trip<T, A>(what, {&layer}, io::peft_config(config), dir, rng);
}

template <class T>
void check_save_load(const std::filesystem::path& dir, Rng& rng) {
  const LoRAConfig lora{.r = 4, .alpha = 8, .lora_bias = true};
  round_trip_one<T>("LoRA", 64, 32, LoRA<T>(64, 32, lora), lora, dir, rng);
  const MELoRAConfig melora{.r = 2, .n = 4};
  round_trip_one<T>("MELoRA", 64, 32, MELoRA<T>(64, 32, melora), melora, dir, rng);
  const LoKrConfig lokr{.r = 2, .decompose_both = true};
  round_trip_one<T>("LoKr", 64, 32, LoKr<T>(64, 32, lokr), lokr, dir, rng);
  const C3AConfig c3a{.block_size = 64};
  round_trip_one<T>("C3A", 128, 64, C3A<T>(128, 64, c3a), c3a, dir, rng);
  for (const Structure s : {Structure::LDR, Structure::Kronecker, Structure::Circulant}) {
    const SURMConfig surm{.structure = s, .rank = 2, .alpha = 0.5};
    round_trip_one<T>("SURM " + std::to_string(static_cast<int>(s)), 256, 256, SURM<T>(256, 256, surm), surm, dir, rng);
  }
  const SURMAdapterConfig surm_adapter{.structure = Structure::LDR, .rank = 2};
  round_trip_one<T>("SURMAdapter", 64, 64, SURMAdapter<T>(64, 64, surm_adapter), surm_adapter, dir, rng);
  const REDConfig red{};
  round_trip_one<T>("RED", 64, 32, RED<T>(64, 32, red), red, dir, rng);

  auto ia3 = over<T>(64, 32, IA3<T>(64, 32, {.feedforward = true}), rng);
  perturb(ia3.adapter().parameters(), rng);
  check_round_trip<T, IA3<T>>("IA3", {&ia3}, io::ia3_peft_config({"fc"}, {"fc"}), dir, rng);

  auto factors = std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = 4, .d = 64, .heads = 2, .layers = 2, .matrix_types = 2});
  perturb(factors->parameters(), rng);
  auto q = over<T>(64, 64, LoRTA<T>(factors, 0, 0), rng);
  auto v = over<T>(64, 64, LoRTA<T>(factors, 1, 1), rng);
  check_round_trip<T, LoRTA<T>>("LoRTA", {&q, &v}, io::peft_config(factors->config()), dir, rng);
}

/// A fresh directory under the system's temp directory, removed on exit.
struct TempDir {
  TempDir() {
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    for (int attempt = 0;; ++attempt) {
      path = std::filesystem::temp_directory_path() /
             ("peft_consumer_" + std::to_string(stamp) + "_" + std::to_string(attempt));
      if (std::filesystem::create_directory(path)) return;
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path path;
};

template <class T>
void check_all(const std::filesystem::path& dir) {
  Rng rng(std::is_same_v<T, float> ? 1 : 2);
  check_adapters<T>(rng);
  check_optimizers<T>(rng);
  check_save_load<T>(dir, rng);
}

}  // namespace

int main() {
  const auto start = std::chrono::steady_clock::now();
  try {
    TempDir tmp;
    check_all<float>(tmp.path / "float");
    check_all<double>(tmp.path / "double");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: unexpected exception: %s\n", e.what());
    return 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("consumer: %d checks, %d failed, %.2f s\n", checks, failures, seconds);
  return failures == 0 ? 0 : 1;
}
