// Inference: Adapted::infer and MultiAdapted::infer (one active set or a
// mixed batch) against the eval-mode forward for every adapter kind, from
// several threads at once on one layer, without disturbing a training
// forward's backward; and a second backward on one forward refused. The
// threaded tests also run under ThreadSanitizer (test_inference_tsan, built
// with PEFT_TEST_THREADS_ONLY: only those tests, to keep that build small).
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <peft/peft.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

constexpr Index kIn = 24, kOut = 16, kRows = 7;

/// Every parameter at random values, scales near 1: nothing hides behind a zero init.
template <class A>
A randomized(A adapter, std::uint64_t seed) {
  for (auto& p : adapter.parameters()) {
    p.value = random_matrix<typename A::Scalar>(p.value.rows(), p.value.cols(), seed++);
    if (p.name == "ia3_l" || p.name == "red_scale" || p.name == "lora_magnitude_vector") p.value.array() += 2;
  }
  return adapter;
}

/// Calls check(adapter, name) for one adapter of every kind (several SURM
/// structures), d_in x d_out = kIn x kOut where the kind allows, square otherwise.
template <class T, class Check>
void for_every_kind(Check&& check) {
  const Index d = kOut;
  check(randomized(LoRA<T>(kIn, kOut, {.r = 3, .alpha = 6, .dropout = 0.3, .lora_bias = true}), 1), "LoRA");
  check(randomized(DoRA<T>(kIn, kOut, {.r = 2, .alpha = 4, .dropout = 0.2}), 2), "DoRA");
  check(randomized(IA3<T>(kIn, kOut, {.feedforward = true}), 3), "IA3 feed-forward");
  check(randomized(IA3<T>(kIn, kOut, {}), 4), "IA3");
  check(randomized(RED<T>(kIn, kOut), 5), "RED");
  check(randomized(Full<T>(kIn, kOut, {.bias = true}), 6), "Full");
  check(randomized(MELoRA<T>(kIn, kOut, {.r = 2, .n = 4, .dropout = 0.2}), 7), "MELoRA");
  check(randomized(LoKr<T>(kIn, kOut, {.r = 2, .decompose_both = true, .rank_dropout = 0.3, .module_dropout = 0.2}), 8),
        "LoKr");
  check(randomized(Houlsby<T>(kIn, kOut, {.bottleneck = 4}), 9), "Houlsby");
  check(randomized(C3A<T>(kIn, kOut, {.block_size = 8}), 10), "C3A");
  for (auto s : {Structure::Circulant, Structure::CirculantSingle, Structure::SymToeplitz, Structure::Toeplitz,
                 Structure::LDR}) {
    check(randomized(SURM<T>(kIn, kOut, {.structure = s, .rank = 2, .alpha = 0.5}), 11), "SURM rectangular");
    check(randomized(SURM<T>(d, d, {.structure = s, .rank = 2, .alpha = 0.5}), 12), "SURM square");
    check(randomized(SURMAdapter<T>(kIn, kOut, {.structure = s, .rank = 2, .dropout = 0.2}), 13), "SURMAdapter");
  }
  check(randomized(SURM<T>(d, d, {.structure = Structure::Kronecker, .rank = 2}), 14), "SURM Kronecker");
  auto factors = std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = 3, .d = d, .heads = 4, .layers = 2, .dropout = 0.2});
  for (auto& p : factors->parameters()) p.value = random_matrix<T>(p.value.rows(), p.value.cols(), 15);
  check(LoRTA<T>(factors, 1, 2), "LoRTA");
}

#ifndef PEFT_TEST_THREADS_ONLY
template <class T>
class InferenceTest : public ::testing::Test {};
TYPED_TEST_SUITE(InferenceTest, Precisions);

TYPED_TEST(InferenceTest, MatchesTheEvalForwardForEveryKind) {
  using T = TypeParam;
  for_every_kind<T>([](auto adapter, const std::string& kind) {
    SCOPED_TRACE(kind);
    Rng rng(7);
    const Index d_in = adapter.in_features(), d_out = adapter.out_features();  // before the move below
    Adapted layer(Linear<T>::random(d_in, d_out, rng), std::move(adapter));
    const Matrix<T> X = random_matrix<T>(kRows, layer.in_features(), 21);
    layer.set_training(false);
    const Matrix<T> expected = layer.forward(X);
    layer.set_training(true);  // infer is eval whatever the mode: no dropout
    const auto& frozen = layer;
    EXPECT_LT(max_rel_diff(frozen.infer(X), expected), tolerance<T>());

    // Parameters changed after the last forward (an optimizer step): infer
    // reads them now, no spectrum or norm cached by forward.
    for (auto& p : layer.parameters()) p.value = (p.value.array() * T(0.5) + T(0.25)).matrix();
    const Matrix<T> inferred = frozen.infer(X);
    layer.set_training(false);
    EXPECT_LT(max_rel_diff(inferred, layer.forward(X)), tolerance<T>());

    // A strided input (a block of a wider matrix) reads the same.
    const Matrix<T> wide = random_matrix<T>(kRows, layer.in_features() + 5, 22);
    EXPECT_LT(max_rel_diff(frozen.infer(wide.leftCols(layer.in_features())),
                           layer.forward(Matrix<T>(wide.leftCols(layer.in_features())))),
              tolerance<T>());
  });
}

TYPED_TEST(InferenceTest, LeavesTheTrainingForwardsBackwardAlone) {
  using T = TypeParam;
  for_every_kind<T>([](auto adapter, const std::string& kind) {
    SCOPED_TRACE(kind);
    Rng rng(8);
    const Index d_in = adapter.in_features(), d_out = adapter.out_features();  // before the move below
    Adapted layer(Linear<T>::random(d_in, d_out, rng), std::move(adapter));
    layer.set_training(false);  // deterministic: the two runs below must agree bitwise
    const Matrix<T> X = random_matrix<T>(kRows, layer.in_features(), 31);
    const Matrix<T> dY = random_matrix<T>(kRows, layer.out_features(), 32);
    auto grads = [&] {
      Matrix<T> all(1, 0);
      for (const auto& p : layer.parameters()) {
        all.conservativeResize(1, all.cols() + p.grad.size());
        all.rightCols(p.grad.size()) = p.grad.reshaped(1, p.grad.size());
      }
      return all;
    };
    layer.zero_grad();
    layer.forward(X);
    const Matrix<T> dX = layer.backward(dY);
    const Matrix<T> expected = grads();

    layer.zero_grad();
    layer.forward(X);
    const auto& frozen = layer;
    frozen.infer(random_matrix<T>(kRows + 3, layer.in_features(), 33));  // another batch size in between
    EXPECT_EQ(layer.backward(dY), dX);
    EXPECT_EQ(grads(), expected);
  });
}

#endif  // PEFT_TEST_THREADS_ONLY

/// Runs `work(t)` on `threads` threads at once.
template <class Work>
void on_threads(int threads, Work&& work) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&work, t] { work(t); });
  for (auto& th : pool) th.join();
}

TEST(Inference, SeveralThreadsOnOneLayer) {
  using T = float;
  for_every_kind<T>([](auto adapter, const std::string& kind) {
    SCOPED_TRACE(kind);
    Rng rng(9);
    const Index d_in = adapter.in_features(), d_out = adapter.out_features();  // before the move below
    const Adapted layer(Linear<T>::random(d_in, d_out, rng), std::move(adapter));
    constexpr int kThreads = 4, kCalls = 3;
    std::vector<Matrix<T>> inputs, serial;
    for (int t = 0; t < kThreads; ++t) {
      inputs.push_back(random_matrix<T>(kRows + t, layer.in_features(), 40 + static_cast<std::uint64_t>(t)));
      serial.push_back(layer.infer(inputs.back()));
    }
    std::vector<double> worst(kThreads, 0.0);
    on_threads(kThreads, [&](int t) {
      Matrix<T> Y;
      for (int c = 0; c < kCalls; ++c) {
        layer.infer(inputs[static_cast<std::size_t>(t)], Y);
        worst[static_cast<std::size_t>(t)] =
            std::max(worst[static_cast<std::size_t>(t)], max_rel_diff(Y, serial[static_cast<std::size_t>(t)]));
      }
    });
    for (double w : worst) EXPECT_EQ(w, 0.0);
  });
}

/// A layer holding one adapter of every kind that fits kIn x kOut.
template <class T>
MultiAdapted<T> many_kinds() {
  Rng rng(5);
  MultiAdapted<T> layer(Linear<T>::random(kIn, kOut, rng));
  layer.add_adapter("lora", randomized(LoRA<T>(kIn, kOut, {.r = 3, .alpha = 6, .dropout = 0.3}), 1));
  layer.add_adapter("ff", randomized(IA3<T>(kIn, kOut, {.feedforward = true}), 2));
  layer.add_adapter("red", randomized(RED<T>(kIn, kOut), 3));
  layer.add_adapter("c3a", randomized(C3A<T>(kIn, kOut, {.block_size = 8}), 4));
  layer.add_adapter("surm", randomized(SURM<T>(kIn, kOut, {.structure = Structure::LDR, .rank = 2}), 5));
  layer.add_adapter("houlsby", randomized(Houlsby<T>(kIn, kOut, {.bottleneck = 4}), 6));
  layer.add_adapter("dora", randomized(DoRA<T>(kIn, kOut, {.r = 2, .alpha = 4}), 7));
  return layer;
}

#ifndef PEFT_TEST_THREADS_ONLY
TYPED_TEST(InferenceTest, MultiAdaptedActiveSetsAndMixedBatches) {
  using T = TypeParam;
  auto layer = many_kinds<T>();
  layer.set_training(false);
  const auto& frozen = layer;
  const Matrix<T> X = random_matrix<T>(11, kIn, 51);
  for (const std::vector<std::string>& set : {std::vector<std::string>{}, {"lora"}, {"dora"},
                                               {"ff", "lora", "c3a", "surm", "red", "houlsby"}}) {
    layer.set_adapter(set);
    EXPECT_LT(max_rel_diff(frozen.infer(X), layer.forward(X)), tolerance<T>());
  }
  const std::vector<int> rows = {0, 3, -1, 1, 1, 6, 2, 4, 5, 0, 6};  // every adapter, DoRA included, and the base
  EXPECT_LT(max_rel_diff(frozen.infer(X, rows), layer.forward(X, rows)), tolerance<T>());

  layer.set_adapter({"lora", "red"});
  layer.merge();
  EXPECT_LT(max_rel_diff(frozen.infer(X), layer.forward(X)), tolerance<T>());
  EXPECT_PEFT_ERROR(frozen.infer(X, rows), "MultiAdapted::infer: adapters [lora, red] are merged");
  layer.unmerge();

  EXPECT_PEFT_ERROR(frozen.infer(Matrix<T>::Zero(2, kIn + 1)),
                    "MultiAdapted::infer: X must have in_features = 24 columns, got 2 x 25");
  EXPECT_PEFT_ERROR(frozen.infer(X, std::vector<int>(3, 0)), "MultiAdapted::infer: expected 11 row_adapter entries");
  EXPECT_PEFT_ERROR(frozen.infer(X, std::vector<int>(11, 7)), "MultiAdapted::infer: row_adapter[0] = 7");
}

#endif  // PEFT_TEST_THREADS_ONLY

TEST(Inference, MixedBatchesFromSeveralThreads) {
  using T = float;
  auto layer = many_kinds<T>();
  layer.set_adapter({"ff", "lora", "red"});
  const auto& frozen = layer;
  constexpr int kThreads = 4;
  std::vector<Matrix<T>> inputs, serial;
  std::vector<std::vector<int>> rows;
  for (int t = 0; t < kThreads; ++t) {
    const Index n = 9 + t;
    inputs.push_back(random_matrix<T>(n, kIn, 60 + static_cast<std::uint64_t>(t)));
    rows.emplace_back();
    for (Index i = 0; i < n; ++i) rows.back().push_back(static_cast<int>((i * (t + 2)) % 8) - 1);
    serial.push_back(t % 2 == 0 ? frozen.infer(inputs.back(), rows.back()) : frozen.infer(inputs.back()));
  }
  std::vector<double> worst(kThreads, 0.0);
  on_threads(kThreads, [&](int t) {
    const auto i = static_cast<std::size_t>(t);
    for (int c = 0; c < 3; ++c) {
      const Matrix<T> Y = t % 2 == 0 ? frozen.infer(inputs[i], rows[i]) : frozen.infer(inputs[i]);
      worst[i] = std::max(worst[i], max_rel_diff(Y, serial[i]));
    }
  });
  for (double w : worst) EXPECT_EQ(w, 0.0);
}

#ifndef PEFT_TEST_THREADS_ONLY
TEST(Inference, BadInputIsRefused) {
  Rng rng(1);
  const Adapted layer(Linear<double>::random(kIn, kOut, rng), LoRA<double>(kIn, kOut, {.r = 2}));
  EXPECT_PEFT_ERROR(layer.infer(Matrix<double>::Zero(3, kIn - 1)),
                    "Adapted::infer: X must have in_features = 24 columns, got 3 x 23");
  const LoRA<double> lora(kIn, kOut, {.r = 2});
  Matrix<double> Y = Matrix<double>::Zero(3, kOut + 1);
  EXPECT_PEFT_ERROR(lora.infer_delta(Matrix<double>::Zero(3, kIn), Y), "LoRA::infer_delta: expected X with d_in = 24");
}

TEST(Adapted, RefusesASecondBackwardOnOneForward) {
  Rng rng(2);
  Adapted layer(Linear<double>::random(kIn, kOut, rng), randomized(LoRA<double>(kIn, kOut, {.r = 2}), 3));
  const Matrix<double> X = random_matrix<double>(4, kIn, 1), dY = random_matrix<double>(4, kOut, 2);
  layer.forward(X);
  layer.backward(dY);
  EXPECT_PEFT_ERROR(layer.backward(dY), "Adapted::backward: called before forward, or twice for one forward");
  layer.forward(X);  // a new forward allows one more
  layer.backward(dY);
}
#endif  // PEFT_TEST_THREADS_ONLY

}  // namespace
}  // namespace peft::test
