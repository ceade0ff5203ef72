// Data-parallel training over MPI (peft/dist/data_parallel.hpp), run by ctest
// on 2 ranks through mpiexec: each rank takes half of every batch and the
// gradients are averaged, and after k steps every rank holds the parameters
// of one process training on the whole batch (double: within 1e-12
// relative; float: 1e-5), for LoRA, a circulant SURM, RED and LoRTA (whose
// factors two layers share and which are reduced once), with one blocking
// all-reduce and with per-layer non-blocking ones. Also: broadcast from rank
// 0, saving on rank 0 only (and its failure reaching every rank), a
// distributed run stopped and resumed from its files, and bad arguments.
#include <mpi.h>

#include <filesystem>
#include <string>
#include <vector>

#include <peft/adapters/lora.hpp>
#include <peft/adapters/lorta.hpp>
#include <peft/adapters/red.hpp>
#include <peft/adapters/surm.hpp>
#include <peft/core/adapted.hpp>
#include <peft/dist/data_parallel.hpp>
#include <peft/io/peft_dir.hpp>
#include <peft/io/training_state.hpp>
#include <peft/optim/adamw.hpp>

#include "test_util.hpp"

namespace {

/// MPI_Init before the first test, MPI_Finalize after the last.
class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
  void TearDown() override { MPI_Finalize(); }
};
[[maybe_unused]] ::testing::Environment* const kMpi = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

}  // namespace

namespace peft::test {
namespace {

namespace fs = std::filesystem;
constexpr Index kD = 16, kRows = 8, kSteps = 4;

/// Adapters of each kind for the two layers; `seed` differs per rank before the broadcast.
template <class T>
struct LoRAKind {
  static LoRA<T> make(Index layer, std::uint64_t seed, const std::shared_ptr<LoRTAFactors<T>>&) {
    return LoRA<T>(kD, kD, {.r = 3, .alpha = 6, .init = LoRAInit::None, .seed = seed + static_cast<std::uint64_t>(layer)});
  }
};
template <class T>
struct SURMKind {
  static SURM<T> make(Index, std::uint64_t seed, const std::shared_ptr<LoRTAFactors<T>>&) {
    return SURM<T>(kD, kD, {.structure = Structure::Circulant, .alpha = 0.5, .seed = seed});
  }
};
template <class T>
struct REDKind {
  static RED<T> make(Index, std::uint64_t, const std::shared_ptr<LoRTAFactors<T>>&) { return RED<T>(kD, kD); }
};
template <class T>
struct LoRTAKind {
  static LoRTA<T> make(Index layer, std::uint64_t, const std::shared_ptr<LoRTAFactors<T>>& factors) {
    return LoRTA<T>(factors, layer, 0);
  }
};

template <class T>
struct Data {
  Matrix<T> X = random_matrix<T>(kRows, kD, 201);
  Matrix<T> targets = random_matrix<T>(kRows, kD, 202);
  Linear<T> base1{random_matrix<T>(kD, kD, 203), random_matrix<T>(kD, 1, 204)};
  Linear<T> base2{random_matrix<T>(kD, kD, 205)};
};

/// Two adapted layers with tanh between, their optimizer, and training steps
/// on rows [begin, end) of the batch, the gradients averaged by `average`
/// (nullptr: no communication), per layer (`overlap`) or all at once.
template <class T, class Kind>
struct Model {
  using A = decltype(Kind::make(0, 0, nullptr));
  std::shared_ptr<LoRTAFactors<T>> factors;
  Adapted<A> layer1, layer2;
  optim::AdamW<T> optimizer;

  Model(const Data<T>& data, std::uint64_t seed)
      : factors(std::make_shared<LoRTAFactors<T>>(
            LoRTAConfig{.r = 3, .alpha = 6, .d = kD, .heads = 2, .layers = 2, .matrix_types = 1, .seed = seed})),
        layer1(data.base1, Kind::make(0, seed, factors)),
        layer2(data.base2, Kind::make(1, seed, factors)),
        optimizer(optim::ParamSet<T>{layer1.parameters(), layer2.parameters()}, {.lr = 0.05, .weight_decay = 0.01}) {
    if constexpr (std::is_same_v<A, LoRTA<T>>) {  // B starts at zero: give every factor values
      std::uint64_t i = 0;
      for (auto& p : optimizer.params().views()) p.value = random_matrix<T>(p.value.rows(), p.value.cols(), 300 + seed + i++);
    }
  }

  std::vector<Parameter<T>> group(int layer) { return layer == 1 ? layer1.parameters() : layer2.parameters(); }

  void train(const Data<T>& data, Index begin, Index end, Index steps, dist::GradientAverager<T>* average,
             bool overlap) {
    const Matrix<T> X = data.X.middleRows(begin, end - begin), target = data.targets.middleRows(begin, end - begin);
    Matrix<T> H, Y, dH, dX;
    for (Index step = 0; step < steps; ++step) {
      optimizer.zero_grad();
      layer1.forward(X, H);
      const Matrix<T> act = H.array().tanh().matrix();
      layer2.forward(act, Y);
      const Matrix<T> dY = (Y - target) / static_cast<T>(end - begin);  // the mean over this rank's rows
      layer2.backward(dY, dH);
      if (average && overlap) average->start(0);  // layer 2's gradients are final
      dH.array() *= T(1) - act.array().square();
      layer1.backward(dH, dX);
      if (average && overlap) average->finish();
      if (average && !overlap) average->all();
      optimizer.step();
    }
  }

  std::vector<Matrix<T>> values() {
    std::vector<Matrix<T>> out;
    for (const auto& p : optimizer.params().views()) out.emplace_back(p.value);
    return out;
  }
};

template <class T>
double worst_relative_difference(const std::vector<Matrix<T>>& a, const std::vector<Matrix<T>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, max_rel_diff(a[i], b[i]));
  return worst;
}

template <class T>
double bound() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class Kind>
class DataParallel : public ::testing::Test {};
using Kinds = ::testing::Types<LoRAKind<double>, SURMKind<double>, REDKind<double>, LoRTAKind<double>, LoRAKind<float>,
                               SURMKind<float>, REDKind<float>, LoRTAKind<float>>;
TYPED_TEST_SUITE(DataParallel, Kinds);

template <class Kind>
struct ScalarOf;
template <template <class> class K, class T>
struct ScalarOf<K<T>> {
  using type = T;
};

TYPED_TEST(DataParallel, HalfBatchPerRankMatchesOneProcessOnTheWholeBatch) {
  using T = typename ScalarOf<TypeParam>::type;
  const int rank = dist::rank(), ranks = dist::size();
  ASSERT_EQ(kRows % ranks, 0);
  const Data<T> data;
  Model<T, TypeParam> reference(data, 11);
  reference.train(data, 0, kRows, kSteps, nullptr, false);

  for (const bool overlap : {false, true}) {
    Model<T, TypeParam> model(data, 11 + 100 * static_cast<std::uint64_t>(rank));  // other ranks start elsewhere...
    dist::broadcast_parameters(model.optimizer.params());                         // ...until rank 0's arrive
    std::vector<Parameter<T>> everything = model.optimizer.params().views();
    dist::GradientAverager<T> blocking(model.optimizer.params());
    dist::GradientAverager<T> per_layer({model.group(2), model.group(1)});
    EXPECT_EQ(blocking.count(), model.optimizer.params().num_params());
    EXPECT_EQ(per_layer.count(), model.optimizer.params().num_params());  // shared LoRTA factors once
    const Index share = kRows / ranks;
    model.train(data, rank * share, (rank + 1) * share, kSteps, overlap ? &per_layer : &blocking, overlap);
    EXPECT_LE(worst_relative_difference(model.values(), reference.values()), bound<T>())
        << "rank " << rank << " of " << ranks << (overlap ? ", per-layer non-blocking" : ", one all-reduce");
  }
}

TEST(Dist, SavesOnRootOnlyAndReportsItsFailureEverywhere) {
  const fs::path dir = fs::temp_directory_path() / "peft_dist_on_root";
  const Data<double> data;
  Model<double, LoRAKind<double>> model(data, 11);
  int calls = 0;
  dist::on_root([&] {
    ++calls;
    io::save_peft<double>(dir, {{"fc1", model.layer1}}, {.dtype = "F64"});
  });
  EXPECT_EQ(calls, dist::rank() == 0 ? 1 : 0);
  EXPECT_TRUE(fs::exists(dir / "adapter_config.json")) << "rank " << dist::rank();  // written before any rank returns
  MPI_Barrier(MPI_COMM_WORLD);
  dist::on_root([&] { fs::remove_all(dir); });
  EXPECT_PEFT_ERROR(dist::on_root([] { throw Error("disk full"); }), "peft::dist::on_root: rank 0 failed: disk full");
  EXPECT_PEFT_ERROR(dist::on_root([] {}, dist::size()),
                    "on_root: expected a root rank in [0, " + std::to_string(dist::size()) + ")");
}

TEST(Dist, RefusesBadArguments) {
  Model<double, LoRAKind<double>> model(Data<double>(), 11);
  EXPECT_PEFT_ERROR(dist::broadcast_parameters(model.optimizer.params(), dist::size()),
                    "broadcast_parameters: expected a root rank in [0, " + std::to_string(dist::size()) + ")");
  dist::GradientAverager<double> average({model.group(2), model.group(1)});
  EXPECT_PEFT_ERROR(average.start(2), "GradientAverager::start: expected a group in [0, 2), got 2");
  average.start(0);
  EXPECT_PEFT_ERROR(average.start(0), "group 0 was already started in this step");
  EXPECT_PEFT_ERROR(average.all(), "a step begun with start() must end with finish()");
  average.finish();
  average.all();  // a fresh step works
  if (dist::size() > 1) {  // ranks with different models are told so, all of them
    std::vector<std::vector<Parameter<double>>> groups{model.group(2)};
    if (dist::rank() == 1) groups.push_back(model.group(1));
    EXPECT_PEFT_ERROR(dist::GradientAverager<double> mismatched(groups), "GradientAverager: the ranks' parameters differ");
  }
}

// A 2-rank run stopped after 2 steps (adapters saved on rank 0, the
// optimizer state by every rank: it is the same on all) and resumed in new
// objects ends where the uninterrupted 2-rank run does, bit for bit.
TEST(Dist, ResumedRunMatchesTheUninterruptedOne) {
  const fs::path dir = fs::temp_directory_path() / "peft_dist_resume";
  const Data<double> data;
  const int rank = dist::rank(), ranks = dist::size();
  const Index share = kRows / ranks, begin = rank * share, end = begin + share;

  Model<double, LoRAKind<double>> straight(data, 11);
  dist::GradientAverager<double> average(straight.optimizer.params());
  straight.train(data, begin, end, kSteps, &average, false);

  {
    Model<double, LoRAKind<double>> first(data, 11);
    dist::GradientAverager<double> first_average(first.optimizer.params());
    first.train(data, begin, end, 2, &first_average, false);
    dist::on_root([&] {
      io::save_peft<double>(dir / "fc1", {{"fc1", first.layer1}}, {.dtype = "F64"});
      io::save_peft<double>(dir / "fc2", {{"fc2", first.layer2}}, {.dtype = "F64"});
    });
    io::save_training_state(dir / ("training_state.rank" + std::to_string(rank) + ".safetensors"), first.optimizer, 2);
  }
  Model<double, LoRAKind<double>> resumed(data, 999);  // other initial values: replaced from the files
  // Every rank reads the adapters rank 0 saved into its own layers.
  const auto copy_from = [](AdaptedLayer<double> loaded, auto& layer) {
    const auto from = loaded.parameters();
    auto to = layer.parameters();
    ASSERT_EQ(from.size(), to.size());
    for (std::size_t i = 0; i < to.size(); ++i) to[i].value = from[i].value;
  };
  copy_from(io::load_peft<double>(dir / "fc1").wrap("fc1", data.base1), resumed.layer1);
  copy_from(io::load_peft<double>(dir / "fc2").wrap("fc2", data.base2), resumed.layer2);
  EXPECT_EQ(io::load_training_state(dir / ("training_state.rank" + std::to_string(rank) + ".safetensors"),
                                    resumed.optimizer),
            2);
  dist::GradientAverager<double> resumed_average(resumed.optimizer.params());
  resumed.train(data, begin, end, kSteps - 2, &resumed_average, false);
  EXPECT_EQ(worst_relative_difference(resumed.values(), straight.values()), 0.0);
  MPI_Barrier(MPI_COMM_WORLD);
  dist::on_root([&] { fs::remove_all(dir); });
}

}  // namespace
}  // namespace peft::test
