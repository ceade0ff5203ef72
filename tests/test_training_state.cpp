// Resumable training (io/training_state.hpp): a run stopped after k steps,
// its adapters saved with save_peft and its optimizer, schedule position and
// generators with save_training_state, then resumed in fresh objects from
// those files, ends with exactly the parameters of a run never stopped
// (AdamW with a schedule, SGD with momentum; dropout in both adapters, a
// shuffled data order). Without the generators the resumed run differs,
// and files that do not fit the run are refused naming what is wrong.
#include <filesystem>
#include <string>
#include <vector>

#include <peft/adapters/lokr.hpp>
#include <peft/adapters/lora.hpp>
#include <peft/core/adapted.hpp>
#include <peft/core/adapted_layer.hpp>
#include <peft/io/peft_dir.hpp>
#include <peft/io/training_state.hpp>
#include <peft/optim/adamw.hpp>
#include <peft/optim/schedule.hpp>
#include <peft/optim/sgd.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

namespace fs = std::filesystem;

constexpr Index kIn = 10, kHidden = 12, kOut = 6, kSamples = 64, kBatch = 8, kSteps = 12, kStopAt = 5;

/// A fixed regression task: inputs and a teacher's targets.
template <class T>
struct Task {
  Matrix<T> X = random_matrix<T>(kSamples, kIn, 101);
  Matrix<T> targets = (random_matrix<T>(kSamples, kIn, 101) * random_matrix<T>(kIn, kOut, 102)).array().tanh().matrix();
  Linear<T> base1{random_matrix<T>(kHidden, kIn, 103), random_matrix<T>(kHidden, 1, 104)};
  Linear<T> base2{random_matrix<T>(kOut, kHidden, 105)};
};

LoRAConfig lora_config() { return {.r = 4, .alpha = 8, .dropout = 0.25, .init = LoRAInit::Gaussian, .seed = 7}; }
LoKrConfig lokr_config() { return {.r = 2, .alpha = 4, .rank_dropout = 0.3, .module_dropout = 0.1, .seed = 8}; }

/// Steps [from, to) of training layer2(tanh(layer1(x))) on batches drawn
/// with `data`, the lr following `schedule`.
template <class T, class L1, class L2, class Optimizer>
void train(L1& layer1, L2& layer2, Optimizer& optimizer, Rng& data, const Task<T>& task, Index from, Index to,
           double base_lr) {
  const optim::Schedule schedule(kSteps, 2, optim::Decay::Cosine);
  Matrix<T> X(kBatch, kIn), target(kBatch, kOut), H, Y, dH, dX;
  for (Index step = from; step < to; ++step) {
    for (Index i = 0; i < kBatch; ++i) {
      const auto row = static_cast<Index>(data.next() % kSamples);
      X.row(i) = task.X.row(row);
      target.row(i) = task.targets.row(row);
    }
    optimizer.set_lr(base_lr * schedule.factor(step));
    optimizer.zero_grad();
    layer1.forward(X, H);
    const Matrix<T> A = H.array().tanh().matrix();
    layer2.forward(A, Y);
    const Matrix<T> dY = (Y - target) / static_cast<T>(kBatch);
    layer2.backward(dY, dH);
    dH.array() *= T(1) - A.array().square();
    layer1.backward(dH, dX);
    optimizer.step();
  }
}

template <class T>
std::vector<Matrix<T>> values_of(const std::vector<Parameter<T>>& a, const std::vector<Parameter<T>>& b) {
  std::vector<Matrix<T>> out;
  for (const auto* group : {&a, &b})
    for (const auto& p : *group) out.emplace_back(p.value);
  return out;
}

template <class T>
class TrainingState : public ::testing::Test {
 protected:
  fs::path dir = fs::temp_directory_path() /
                 ("peft_training_state_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                  (std::is_same_v<T, float> ? "_f32" : "_f64"));
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }

  Task<T> task;
  io::SaveOptions save_options{.dtype = std::is_same_v<T, float> ? "F32" : "F64"};

  /// The uninterrupted run's parameters after kSteps.
  template <class MakeOptimizer>
  std::vector<Matrix<T>> uninterrupted(MakeOptimizer make, double lr) {
    Adapted<LoRA<T>> layer1(task.base1, LoRA<T>(kIn, kHidden, lora_config()));
    Adapted<LoKr<T>> layer2(task.base2, LoKr<T>(kHidden, kOut, lokr_config()));
    auto optimizer = make(optim::ParamSet<T>{layer1.parameters(), layer2.parameters()});
    Rng data(42);
    train(layer1, layer2, optimizer, data, task, 0, kSteps, lr);
    return values_of<T>(layer1.parameters(), layer2.parameters());
  }

  /// Runs kStopAt steps, saves adapters and training state under `dir`, drops every object.
  template <class MakeOptimizer>
  void run_and_stop(MakeOptimizer make, double lr) {
    Adapted<LoRA<T>> layer1(task.base1, LoRA<T>(kIn, kHidden, lora_config()));
    Adapted<LoKr<T>> layer2(task.base2, LoKr<T>(kHidden, kOut, lokr_config()));
    auto optimizer = make(optim::ParamSet<T>{layer1.parameters(), layer2.parameters()});
    Rng data(42);
    train(layer1, layer2, optimizer, data, task, 0, kStopAt, lr);
    io::save_peft<T>(dir / "fc1", {{"fc1", layer1}}, save_options);
    io::save_peft<T>(dir / "fc2", {{"fc2", layer2}}, save_options);
    io::RandomStreams streams{{"data", &data}};
    io::add_random_streams(streams, "fc1", layer1.random_streams());
    io::add_random_streams(streams, "fc2", layer2.random_streams());
    io::save_training_state(dir / "training_state.safetensors", optimizer, kStopAt, streams);
  }

  /// Fresh layers from the saved directories; `restore_streams` false leaves
  /// the generators as freshly seeded.
  template <class MakeOptimizer>
  std::vector<Matrix<T>> resumed(MakeOptimizer make, double lr, bool restore_streams = true) {
    AdaptedLayer<T> layer1 = io::load_peft<T>(dir / "fc1").wrap("fc1", task.base1);
    AdaptedLayer<T> layer2 = io::load_peft<T>(dir / "fc2").wrap("fc2", task.base2);
    auto optimizer = make(optim::ParamSet<T>{layer1.parameters(), layer2.parameters()});
    Rng data(999);  // another seed: the saved state replaces it
    io::RandomStreams streams{{"data", &data}};
    io::add_random_streams(streams, "fc1", layer1.random_streams());
    io::add_random_streams(streams, "fc2", layer2.random_streams());
    if (!restore_streams) streams.clear();
    Index next = 0;
    if (restore_streams) {
      next = io::load_training_state(dir / "training_state.safetensors", optimizer, streams);
    } else {  // the optimizer alone, from a copy of the file without the generators
      const io::Safetensors saved = io::read_safetensors(dir / "training_state.safetensors");
      io::TensorMap tensors;
      for (const auto& [name, t] : saved)
        if (name.rfind("rng.", 0) != 0) tensors.emplace(name, t);
      io::write_safetensors(dir / "optimizer_only.safetensors", tensors, saved.metadata());
      next = io::load_training_state(dir / "optimizer_only.safetensors", optimizer);
    }
    EXPECT_EQ(next, kStopAt);
    EXPECT_EQ(optimizer.steps(), kStopAt);
    // The lr of the last step taken (the schedule sets it again before the next).
    EXPECT_EQ(optimizer.lr(), lr * optim::Schedule(kSteps, 2, optim::Decay::Cosine).factor(kStopAt - 1));
    train(layer1, layer2, optimizer, data, task, next, kSteps, lr);
    return values_of<T>(layer1.parameters(), layer2.parameters());
  }
};
TYPED_TEST_SUITE(TrainingState, Precisions);

template <class T>
auto adamw() {
  return [](optim::ParamSet<T> params) { return optim::AdamW<T>(std::move(params), {.lr = 1e-2, .weight_decay = 0.01}); };
}
template <class T>
auto sgd() {
  return [](optim::ParamSet<T> params) {
    return optim::SGD<T>(std::move(params), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
  };
}

void expect_identical(const auto& a, const auto& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].rows(), b[i].rows());
    EXPECT_TRUE((a[i].array() == b[i].array()).all()) << "tensor " << i << " differs by "
                                                       << (a[i] - b[i]).cwiseAbs().maxCoeff();
  }
}

TYPED_TEST(TrainingState, AdamWResumeIsBitIdentical) {
  using T = TypeParam;
  const auto expected = this->uninterrupted(adamw<T>(), 1e-2);
  this->run_and_stop(adamw<T>(), 1e-2);
  expect_identical(this->resumed(adamw<T>(), 1e-2), expected);
}

TYPED_TEST(TrainingState, SGDMomentumResumeIsBitIdentical) {
  using T = TypeParam;
  const auto expected = this->uninterrupted(sgd<T>(), 0.1);
  this->run_and_stop(sgd<T>(), 0.1);
  expect_identical(this->resumed(sgd<T>(), 0.1), expected);
}

// The check above can fail: generators left freshly seeded (data order and
// dropout masks) give other parameters.
TYPED_TEST(TrainingState, WithoutTheGeneratorsTheRunDiffers) {
  using T = TypeParam;
  const auto expected = this->uninterrupted(adamw<T>(), 1e-2);
  this->run_and_stop(adamw<T>(), 1e-2);
  const auto other = this->resumed(adamw<T>(), 1e-2, /*restore_streams=*/false);
  double largest = 0;
  for (std::size_t i = 0; i < other.size(); ++i) largest = std::max(largest, double((other[i] - expected[i]).cwiseAbs().maxCoeff()));
  EXPECT_GT(largest, 1e-4);
}

TYPED_TEST(TrainingState, RefusesFilesThatDoNotFitTheRun) {
  using T = TypeParam;
  this->run_and_stop(adamw<T>(), 1e-2);
  const fs::path file = this->dir / "training_state.safetensors";
  EXPECT_FALSE(fs::exists(this->dir / "training_state.safetensors.partial"));  // renamed into place
  Adapted<LoRA<T>> layer1(this->task.base1, LoRA<T>(kIn, kHidden, lora_config()));
  Adapted<LoKr<T>> layer2(this->task.base2, LoKr<T>(kHidden, kOut, lokr_config()));
  Rng data(1);
  io::RandomStreams streams{{"data", &data}};
  io::add_random_streams(streams, "fc1", layer1.random_streams());
  io::add_random_streams(streams, "fc2", layer2.random_streams());
  auto optimizer = adamw<T>()(optim::ParamSet<T>{layer1.parameters(), layer2.parameters()});
  const Matrix<T> before = layer1.parameters()[0].value;

  auto sgd_optimizer = sgd<T>()(optim::ParamSet<T>{layer1.parameters(), layer2.parameters()});
  EXPECT_PEFT_ERROR(io::load_training_state(file, sgd_optimizer, streams), "saved for a AdamW optimizer, expected SGD");
  auto fewer = adamw<T>()(optim::ParamSet<T>{layer1.parameters()});
  EXPECT_PEFT_ERROR(io::load_training_state(file, fewer, streams), "saved for parameters");
  EXPECT_PEFT_ERROR(io::load_training_state(file, optimizer, {{"data", &data}}),
                    "every saved random stream must be restored");
  Rng extra(3);
  io::RandomStreams more = streams;
  more.emplace_back("shuffle", &extra);
  EXPECT_PEFT_ERROR(io::load_training_state(file, optimizer, more), "expected random stream 'shuffle', found none");
  EXPECT_EQ(optimizer.steps(), 0);  // nothing was restored by the refused loads
  EXPECT_EQ(data.state(), Rng(1).state());

  // The other precision's file: same names and shapes, other dtype.
  using Other = std::conditional_t<std::is_same_v<T, float>, double, float>;
  Adapted<LoRA<Other>> other1(Linear<Other>(this->task.base1.weight().template cast<Other>()),
                              LoRA<Other>(kIn, kHidden, lora_config()));
  Adapted<LoKr<Other>> other2(Linear<Other>(this->task.base2.weight().template cast<Other>()),
                              LoKr<Other>(kHidden, kOut, lokr_config()));
  auto other_optimizer = optim::AdamW<Other>(optim::ParamSet<Other>{other1.parameters(), other2.parameters()});
  const std::string wrong_precision = std::is_same_v<T, float> ? "must be F64 (the optimizer's precision), got F32"
                                                              : "must be F32 (the optimizer's precision), got F64";
  EXPECT_PEFT_ERROR(io::load_training_state(file, other_optimizer, streams), wrong_precision);

  // Damaged metadata and files that are not training states.
  const io::Safetensors saved = io::read_safetensors(file);
  auto rewrite = [&](const std::string& key, const std::string& value) {
    io::Metadata metadata = saved.metadata();
    if (value.empty()) metadata.erase(key);
    else metadata[key] = value;
    io::write_safetensors(this->dir / "damaged.safetensors", saved.tensors(), metadata);
    return this->dir / "damaged.safetensors";
  };
  EXPECT_PEFT_ERROR(io::load_training_state(rewrite("step", "-3"), optimizer, streams),
                    "expected metadata 'step' to be an integer >= 0, got '-3'");
  EXPECT_PEFT_ERROR(io::load_training_state(rewrite("optimizer.steps", "7x"), optimizer, streams),
                    "expected metadata 'optimizer.steps' to be an integer >= 0, got '7x'");
  EXPECT_PEFT_ERROR(io::load_training_state(rewrite("optimizer.lr", "fast"), optimizer, streams),
                    "expected metadata 'optimizer.lr' to be a number, got 'fast'");
  EXPECT_PEFT_ERROR(io::load_training_state(rewrite("optimizer.lr", "1e-3xyz"), optimizer, streams),
                    "expected metadata 'optimizer.lr' to be a number, got '1e-3xyz'");
  EXPECT_PEFT_ERROR(io::load_training_state(rewrite("version", "2"), optimizer, streams), "expected version 1, got '2'");
  EXPECT_PEFT_ERROR(io::load_training_state(rewrite("format", ""), optimizer, streams),
                    "expected metadata 'format', found none");
  EXPECT_PEFT_ERROR(io::load_training_state(this->dir / "fc1" / "adapter_model.safetensors", optimizer, streams),
                    "expected format 'peft-cpp training state', got 'pt'");
  EXPECT_PEFT_ERROR(io::load_training_state(this->dir / "missing.safetensors", optimizer, streams), "missing.safetensors");
  io::TensorMap zeroed = saved.tensors();
  std::fill(zeroed.at("rng.data").data.begin(), zeroed.at("rng.data").data.end(), 0);
  io::write_safetensors(this->dir / "zeroed.safetensors", zeroed, saved.metadata());
  EXPECT_PEFT_ERROR(io::load_training_state(this->dir / "zeroed.safetensors", optimizer, streams),
                    "random stream 'data' has an all-zero state");
  EXPECT_EQ(optimizer.steps(), 0);
  EXPECT_TRUE((layer1.parameters()[0].value.array() == before.array()).all());

  // Saving: two streams with one name, a negative step.
  io::RandomStreams twice{{"data", &data}, {"data", &extra}};
  EXPECT_PEFT_ERROR(io::save_training_state(this->dir / "x.safetensors", optimizer, 0, twice),
                    "two random streams are named 'data'");
  EXPECT_PEFT_ERROR(io::save_training_state(this->dir / "x.safetensors", optimizer, -1), "expected next_step >= 0, got -1");
}

TYPED_TEST(TrainingState, OptimizerStatesAreCheckedBeforeAnythingChanges) {
  using T = TypeParam;
  Adapted<LoRA<T>> layer(this->task.base1, LoRA<T>(kIn, kHidden, lora_config()));
  optim::AdamW<T> optimizer(optim::ParamSet<T>{layer.parameters()});
  optim::OptimizerState<T> state = optimizer.state();
  EXPECT_EQ(state.kind, "AdamW");
  ASSERT_EQ(state.buffers.size(), 2u);
  state.steps = 3;
  state.buffers.at("exp_avg")[1] = Matrix<T>::Ones(2, 2);
  EXPECT_PEFT_ERROR(optimizer.load_state(state), "AdamW::load_state: buffer 'exp_avg' tensor 1 (lora_B) must be 12 x 4");
  state = optimizer.state();
  state.buffers.erase("exp_avg_sq");
  EXPECT_PEFT_ERROR(optimizer.load_state(state), "AdamW::load_state: expected 2 buffer(s), got 1");
  state = optimizer.state();
  state.lr = -1;
  EXPECT_PEFT_ERROR(optimizer.load_state(state), "expected a finite lr >= 0, got -1");
  EXPECT_EQ(optimizer.steps(), 0);

  optim::SGD<T> sgd(optim::ParamSet<T>{layer.parameters()});
  EXPECT_PEFT_ERROR(sgd.load_state(optimizer.state()), "SGD::load_state: expected the state of a SGD optimizer, got 'AdamW'");
  EXPECT_PEFT_ERROR(Rng().set_state({0, 0, 0, 0}), "Rng::set_state: expected a state with a non-zero word, got all zeros");
  Rng a(5), b(6);
  a.next();
  b.set_state(a.state());
  EXPECT_EQ(a.next(), b.next());
}

}  // namespace
}  // namespace peft::test
