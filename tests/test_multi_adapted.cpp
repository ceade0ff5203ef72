// MultiAdapted: several named adapters of different kinds over one shared
// frozen layer. Active sets are checked against dense math and finite
// differences, mixed batches against each row group run alone, and misuse
// against its error messages.
#include <filesystem>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <peft/adapters/c3a.hpp>
#include <peft/adapters/dora.hpp>
#include <peft/adapters/full.hpp>
#include <peft/adapters/ia3.hpp>
#include <peft/adapters/lora.hpp>
#include <peft/adapters/red.hpp>
#include <peft/adapters/surm.hpp>
#include <peft/core/multi_adapted.hpp>
#include <peft/io/multi_adapter_dir.hpp>
#include <peft/testing/gradcheck.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

constexpr Index kIn = 8, kOut = 6;

/// Every parameter of `adapter` set to U(-1, 1) values (LoRA's B starts at 0,
/// which would hide half of its gradient), IA3's and RED's scales near 1.
template <class A>
A randomized(A adapter, std::uint64_t seed) {
  for (auto& p : adapter.parameters()) {
    p.value = random_matrix<typename A::Scalar>(p.value.rows(), p.value.cols(), seed++);
    if (p.name == "ia3_l" || p.name == "red_scale") p.value.array() += 1;
  }
  return adapter;
}

/// A layer with six adapters of six kinds (IA3 "ff" edits the input, RED the
/// output, the others add a delta; DoRA reads the base's weights).
template <class T>
MultiAdapted<T> six_adapters() {
  Rng rng(3);
  MultiAdapted<T> layer(Linear<T>::random(kIn, kOut, rng));
  layer.add_adapter("lora", randomized(LoRA<T>(kIn, kOut, {.r = 3, .alpha = 6}), 10));
  layer.add_adapter("c3a", randomized(C3A<T>(kIn, kOut, {.block_size = 2}), 20));
  layer.add_adapter("ff", randomized(IA3<T>(kIn, kOut, {.feedforward = true}), 30));
  layer.add_adapter("red", randomized(RED<T>(kIn, kOut), 40));
  layer.add_adapter("surm", randomized(SURM<T>(kIn, kOut, {.structure = Structure::Circulant, .alpha = 0.5}), 50));
  layer.add_adapter("dora", randomized(DoRA<T>(kIn, kOut, {.r = 2, .alpha = 4}), 60));
  return layer;
}

template <class T>
Matrix<T> grads_of(MultiAdapted<T>& layer, const std::string& name) {
  std::vector<T> all;
  for (const auto& p : layer.parameters(name)) all.insert(all.end(), p.grad.data(), p.grad.data() + p.grad.size());
  return Eigen::Map<Matrix<T>>(all.data(), 1, static_cast<Index>(all.size()));
}

template <class T>
class MultiAdaptedTest : public ::testing::Test {};
TYPED_TEST_SUITE(MultiAdaptedTest, Precisions);

TYPED_TEST(MultiAdaptedTest, ActiveSetsComposeAsDenseMath) {
  using T = TypeParam;
  auto layer = six_adapters<T>();
  const Matrix<T> X = random_matrix<T>(5, kIn, 1);
  const Matrix<T> W = layer.base().weight();
  const auto b = layer.base().bias().transpose();
  const Matrix<T> base_only = (X * W.transpose()).rowwise() + b;

  EXPECT_TRUE(layer.active_adapters().empty());
  EXPECT_LT(max_rel_diff(layer.forward(X), base_only), tolerance<T>());

  // One adapter: the base plus its ΔW.
  const Matrix<T> dW_lora = layer.template adapter<LoRA<T>>("lora").delta_weight();
  layer.set_adapter("lora");
  EXPECT_LT(max_rel_diff(layer.forward(X), base_only + X * dW_lora.transpose()), tolerance<T>());

  // IA3 on the input, two deltas, RED on the output, in that order.
  const Matrix<T> dW_c3a = layer.template adapter<C3A<T>>("c3a").delta_weight();
  const Matrix<T> dW_surm = layer.template adapter<SURM<T>>("surm").delta_weight();
  const Matrix<T> l = layer.template adapter<IA3<T>>("ff").parameters()[0].value;  // 1 x d_in
  auto red = layer.template adapter<RED<T>>("red").parameters();                    // red_scale, red_bias
  const Matrix<T> s = red[0].value.reshaped(1, kOut), beta = red[1].value.reshaped(1, kOut);
  const Matrix<T> Xs = X.array().rowwise() * l.row(0).array();
  Matrix<T> expected = (Xs * (W + dW_lora + dW_surm).transpose()).rowwise() + b;
  expected = (expected.array().rowwise() * s.row(0).array()).matrix();
  expected.rowwise() += beta.row(0);
  layer.set_adapter({"ff", "lora", "surm", "red"});
  EXPECT_EQ(layer.active_adapters(), (std::vector<std::string>{"ff", "lora", "surm", "red"}));
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  EXPECT_EQ(layer.num_params(), layer.num_params("ff") + layer.num_params("lora") + layer.num_params("surm") +
                                    layer.num_params("red"));

  {  // disabled: the base alone, then the same set again
    auto disabled = layer.disable_adapters();
    EXPECT_TRUE(layer.active_adapters().empty());
    EXPECT_LT(max_rel_diff(layer.forward(X), base_only), tolerance<T>());
  }
  EXPECT_EQ(layer.active_adapters(), (std::vector<std::string>{"ff", "lora", "surm", "red"}));
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());

  // Deleting an active adapter takes it out of the set; c3a joins.
  layer.delete_adapter("surm");
  layer.set_adapter({"ff", "lora", "c3a", "red"});
  expected = (Xs * (W + dW_lora + dW_c3a).transpose()).rowwise() + b;
  expected = (expected.array().rowwise() * s.row(0).array()).matrix();
  expected.rowwise() += beta.row(0);
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  EXPECT_EQ(layer.adapter_names(), (std::vector<std::string>{"lora", "c3a", "ff", "red", "dora"}));
}

TEST(MultiAdapted, SharesOneBaseAndNeverCopiesIt) {
  Rng rng(1);
  auto base = std::make_shared<Linear<double>>(Linear<double>::random(kIn, kOut, rng));
  MultiAdapted<double> first(base), second(base);
  first.add_adapter("a", LoRA<double>(kIn, kOut, {.r = 2}));
  second.add_adapter("b", RED<double>(kIn, kOut));
  EXPECT_EQ(&first.base(), base.get());
  EXPECT_EQ(&second.base(), base.get());
  EXPECT_EQ(base.use_count(), 3);
  MultiAdapted<double> moved = std::move(first);
  EXPECT_EQ(&moved.base(), base.get());
}

TEST(MultiAdapted, GradientsOfAnActiveSetMatchFiniteDifferencesAndSkipInactiveAdapters) {
  auto layer = six_adapters<double>();
  const Matrix<double> X = random_matrix<double>(4, kIn, 2), dY = random_matrix<double>(4, kOut, 3);
  layer.set_adapter({"ff", "lora", "c3a", "surm", "red"});
  layer.zero_grad();
  for (const auto& e : testing::check_gradients(layer, X, dY)) EXPECT_LT(e.error, 1e-7) << e.name;
  EXPECT_EQ(grads_of(layer, "dora").norm(), 0.0);  // not active: no gradient
  EXPECT_GT(grads_of(layer, "lora").norm(), 0.0);
  // (DoRA's gradient treats its weight norm as a constant, as PEFT does, so
  // finite differences do not apply: test_dora checks it; here its mixed-batch
  // rows are checked against DoRA run alone.)
}

/// Runs the layer on a mixed batch: forward(X) with the given rows' adapters.
struct MixedBatch {
  MultiAdapted<double>& layer;
  std::vector<int> row_adapter;
  Matrix<double> forward(const Matrix<double>& X) { return layer.forward(X, row_adapter); }
  Matrix<double> backward(const Matrix<double>& dY) { return layer.backward(dY); }
  void zero_grad() { layer.zero_grad(); }
  std::vector<Parameter<double>> parameters() {
    std::vector<Parameter<double>> all;
    for (const auto& name : {"lora", "c3a", "ff", "red", "surm"}) {
      auto views = layer.parameters(name);
      all.insert(all.end(), views.begin(), views.end());
    }
    return all;
  }
};

template <class T>
void expect_mixed_batch_matches_each_group(const std::vector<int>& row_adapter) {
  auto layer = six_adapters<T>();
  const Index N = static_cast<Index>(row_adapter.size());
  const Matrix<T> X = random_matrix<T>(N, kIn, 4), dY = random_matrix<T>(N, kOut, 5);
  layer.zero_grad();
  const Matrix<T> Y = layer.forward(X, row_adapter);
  const Matrix<T> dX = layer.backward(dY);
  std::vector<Matrix<T>> mixed_grads;
  for (const auto& name : layer.adapter_names()) mixed_grads.push_back(grads_of(layer, name));

  layer.zero_grad();
  const auto names = layer.adapter_names();
  for (int a = -1; a < static_cast<int>(names.size()); ++a) {
    std::vector<Index> rows;
    for (Index i = 0; i < N; ++i)
      if (row_adapter[static_cast<std::size_t>(i)] == a) rows.push_back(i);
    if (rows.empty()) continue;
    if (a < 0) layer.set_adapter(std::vector<std::string>{});
    else layer.set_adapter(names[static_cast<std::size_t>(a)]);
    const Matrix<T> Xg = X(rows, Eigen::all), dYg = dY(rows, Eigen::all);
    const Matrix<T> Yg = layer.forward(Xg);
    const Matrix<T> dXg = layer.backward(dYg);
    const Matrix<T> Y_rows = Y(rows, Eigen::all), dX_rows = dX(rows, Eigen::all);
    EXPECT_LT(max_rel_diff(Y_rows, Yg), tolerance<T>()) << "adapter " << a;
    EXPECT_LT(max_rel_diff(dX_rows, dXg), tolerance<T>()) << "adapter " << a;
  }
  for (std::size_t a = 0; a < names.size(); ++a)
    EXPECT_LT(max_rel_diff(mixed_grads[a], grads_of(layer, names[a])), tolerance<T>()) << names[a];
}

TYPED_TEST(MultiAdaptedTest, MixedBatchMatchesEachRowGroupRunAlone) {
  // Scattered rows (gathered per adapter), some on the base alone.
  expect_mixed_batch_matches_each_group<TypeParam>({3, 0, -1, 5, 1, 2, 0, 4, 3, 5, -1, 1, 2, 4, 0});
  // Sorted rows: each group's block is used in place.
  expect_mixed_batch_matches_each_group<TypeParam>({0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, -1});
  // One adapter for every row, and the base for every row.
  expect_mixed_batch_matches_each_group<TypeParam>(std::vector<int>(7, 1));
  expect_mixed_batch_matches_each_group<TypeParam>(std::vector<int>(3, -1));
}

TEST(MultiAdapted, MixedBatchGradientsMatchFiniteDifferences) {
  auto layer = six_adapters<double>();
  MixedBatch mixed{layer, {4, 0, 2, -1, 3, 1, 4, 0, 2, 3, -1, 1}};  // not DoRA (5), see above
  const Matrix<double> X = random_matrix<double>(12, kIn, 6), dY = random_matrix<double>(12, kOut, 7);
  for (const auto& e : testing::check_gradients(mixed, X, dY)) EXPECT_LT(e.error, 1e-7) << e.name;
}

TYPED_TEST(MultiAdaptedTest, MergingFoldsTheNamedAdaptersIntoTheSharedBaseAndUnmergeRestoresIt) {
  using T = TypeParam;
  auto layer = six_adapters<T>();
  const Matrix<T> X = random_matrix<T>(5, kIn, 11);
  const Linear<T> original = layer.base();

  // Every kind of edit at once: the merged base alone gives what the set gave.
  layer.set_adapter({"red", "lora", "ff", "c3a"});
  const Matrix<T> expected = layer.forward(X);
  layer.merge();
  EXPECT_EQ(layer.merged_adapters(), (std::vector<std::string>{"lora", "c3a", "ff", "red"}));  // fold order
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  {
    auto off = layer.disable_adapters();  // the merged base, now without any adapter running on top
    EXPECT_LT(max_rel_diff(layer.forward(X), expected), tolerance<T>());
  }
  // An adapter not merged runs on top of the merged ones.
  layer.set_adapter({"red", "lora", "ff", "c3a", "surm"});
  const Matrix<T> dW_surm = layer.template adapter<SURM<T>>("surm").delta_weight();
  // As in PEFT, it sees the raw input and adds after the merged edits.
  const Matrix<T> on_top = expected + X * dW_surm.transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), on_top), tolerance<T>());
  EXPECT_PEFT_ERROR(layer.forward(X, std::vector<int>(5, 0)), "adapters [lora, c3a, ff, red] are merged into the base");
  EXPECT_PEFT_ERROR(layer.merge(std::vector<std::string>{"surm"}), "MultiAdapted::merge: adapters [lora, c3a, ff, red] are merged already");
  EXPECT_PEFT_ERROR(layer.delete_adapter("lora"), "'lora' is merged into the base; call unmerge() first");

  layer.unmerge();
  EXPECT_TRUE(layer.merged_adapters().empty());
  EXPECT_LT(max_rel_diff(layer.base().weight(), original.weight()), tolerance<T>());
  EXPECT_LT(max_rel_diff(layer.base().bias(), original.bias()), tolerance<T>());
  EXPECT_PEFT_ERROR(layer.unmerge(), "MultiAdapted::unmerge: nothing is merged");

  // DoRA merges alone; a changed parameter blocks unmerge and leaves the base merged.
  layer.set_adapter("dora");
  const Matrix<T> dora_out = layer.forward(X);
  layer.merge(std::vector<std::string>{"dora"});
  EXPECT_LT(max_rel_diff(layer.forward(X), dora_out), tolerance<T>());  // dora active but merged: runs as the base
  T& first = layer.template adapter<DoRA<T>>("dora").parameters()[0].value(0, 0);
  const T kept = first;
  first += T(1);
  EXPECT_PEFT_ERROR(layer.unmerge(), "the parameters of [dora] changed while merged");
  first = kept;
  layer.unmerge();
  EXPECT_LT(max_rel_diff(layer.base().weight(), original.weight()), tolerance<T>());
}

TEST(MultiAdapted, MergeIsAllOrNothing) {
  auto layer = six_adapters<double>();
  const Linear<double> original = layer.base();
  EXPECT_PEFT_ERROR(layer.merge(), "MultiAdapted::merge: expected at least one adapter to merge");
  EXPECT_PEFT_ERROR(layer.merge({"lora", "dora"}), "MultiAdapted::merge: 'dora' reads the base's weights (DoRA)");
  EXPECT_PEFT_ERROR(layer.merge({"lora", "nope"}), "MultiAdapted::merge: no adapter named 'nope'");
  layer.adapter<C3A<double>>("c3a").parameters()[0].value(0, 0) = std::numeric_limits<double>::infinity();
  EXPECT_PEFT_ERROR(layer.merge({"lora", "c3a"}), "parameter 'c3a_kernel' of adapter 'c3a' holds NaN or Inf");
  layer.adapter<C3A<double>>("c3a").parameters()[0].value(0, 0) = 0.5;
  for (auto& p : layer.parameters("lora")) p.value.setConstant(1e200);  // finite, but B·A overflows
  EXPECT_PEFT_ERROR(layer.merge({"c3a", "lora"}, /*safe_merge=*/true), "would hold NaN or Inf (safe_merge)");
  EXPECT_TRUE(layer.merged_adapters().empty());
  EXPECT_EQ(layer.base().weight(), original.weight());
  EXPECT_EQ(layer.base().bias(), original.bias());

  // An unmerge that fails half-way (RED cannot divide by a zero scale) leaves
  // the base merged, as it was, and the adapters listed as merged.
  layer.parameters("red")[0].value(0, 0) = 0;
  layer.merge({"c3a", "red"});
  const Linear<double> merged = layer.base();
  EXPECT_PEFT_ERROR(layer.unmerge(), "RED::unmerge_from: red_scale has a zero entry");
  EXPECT_EQ(layer.merged_adapters(), (std::vector<std::string>{"c3a", "red"}));
  EXPECT_EQ(layer.base().weight(), merged.weight());
}

/// ΔW of adapter `name` through its type.
template <class T>
Matrix<T> delta_of(MultiAdapted<T>& layer, const std::string& name) {
  if (auto* a = layer.template find_adapter<LoRA<T>>(name)) return a->delta_weight();
  if (auto* a = layer.template find_adapter<C3A<T>>(name)) return a->delta_weight();
  if (auto* a = layer.template find_adapter<SURM<T>>(name)) return a->delta_weight();
  if (auto* a = layer.template find_adapter<Full<T>>(name)) return a->delta_weight();
  ADD_FAILURE() << name << " has no ΔW here";
  return {};
}

TYPED_TEST(MultiAdaptedTest, WeightedCombinationsMatchTheDenseSums) {
  using T = TypeParam;
  auto layer = six_adapters<T>();
  layer.add_adapter("lora2", randomized(LoRA<T>(kIn, kOut, {.r = 2, .alpha = 2, .rslora = true}), 100));
  layer.add_adapter("lora3", randomized(LoRA<T>(kIn, kOut, {.r = 3, .alpha = 4}), 110));
  const Matrix<T> d1 = delta_of(layer, "lora"), d2 = delta_of(layer, "lora2"), d3 = delta_of(layer, "lora3");
  const Matrix<T> dc = delta_of(layer, "c3a"), ds = delta_of(layer, "surm");
  const T tol = static_cast<T>(tolerance<T>() * 10);

  // Cat: exact, ranks add up, scaling 1; negative weights subtract.
  layer.add_weighted_adapter("cat", {"lora", "lora2"}, {0.7, -1.3}, Combination::Cat);
  EXPECT_EQ(layer.template adapter<LoRA<T>>("cat").rank(), 5);
  EXPECT_EQ(layer.template adapter<LoRA<T>>("cat").scaling(), T(1));
  EXPECT_LT(max_rel_diff(delta_of(layer, "cat"), Matrix<T>(T(0.7) * d1 - T(1.3) * d2)), tol);

  // Linear: PEFT's sums of the factors, sign on A, computed here from its definition.
  layer.add_weighted_adapter("linear", {"lora", "lora3"}, {0.5, -2.0}, Combination::Linear);
  const auto& l1 = layer.template adapter<LoRA<T>>("lora");
  const auto& l3 = layer.template adapter<LoRA<T>>("lora3");
  const double w1 = 0.5 * l1.scaling(), w3 = -2.0 * l3.scaling();
  const Matrix<T> A = T(std::sqrt(w1)) * l1.A() - T(std::sqrt(-w3)) * l3.A();
  const Matrix<T> B = T(std::sqrt(w1)) * l1.B() + T(std::sqrt(-w3)) * l3.B();
  EXPECT_LT(max_rel_diff(delta_of(layer, "linear"), Matrix<T>(B * A)), tol);
  layer.add_weighted_adapter("one", {"lora2"}, {-0.25}, Combination::Cat);  // one source: linear, exact
  EXPECT_LT(max_rel_diff(delta_of(layer, "one"), Matrix<T>(T(-0.25) * d2)), tol);

  // Dense: any adapters with a ΔW, as a Full adapter; its forward is the base plus the sum.
  layer.add_weighted_adapter("dense", {"lora", "c3a", "surm"}, {1.0, 0.5, -1.0}, Combination::Dense);
  const Matrix<T> sum = d1 + T(0.5) * dc - ds;
  EXPECT_LT(max_rel_diff(delta_of(layer, "dense"), sum), tol);
  const Matrix<T> X = random_matrix<T>(3, kIn, 13);
  layer.set_adapter("dense");
  const Matrix<T> expected = (X * (layer.base().weight() + sum).transpose()).rowwise() + layer.base().bias().transpose();
  EXPECT_LT(max_rel_diff(layer.forward(X), expected), tol);

  // SVD: full rank reproduces the sum; rank 2 leaves exactly the discarded singular values (Eckart-Young).
  layer.add_weighted_adapter("svd6", {"lora", "c3a", "surm"}, {1.0, 0.5, -1.0}, Combination::SVD, 6);
  EXPECT_LT(max_rel_diff(delta_of(layer, "svd6"), sum), T(100) * tol);
  layer.add_weighted_adapter("svd2", {"lora", "c3a", "surm"}, {1.0, 0.5, -1.0}, Combination::SVD, 2);
  EXPECT_EQ(layer.template adapter<LoRA<T>>("svd2").rank(), 2);
  const Eigen::JacobiSVD<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>> reference(sum.template cast<double>());
  const double discarded = reference.singularValues().tail(4).squaredNorm();
  const double residual = (sum - delta_of(layer, "svd2")).template cast<double>().squaredNorm();
  EXPECT_NEAR(residual, discarded, 1e3 * tolerance<T>() * sum.template cast<double>().squaredNorm());
  // Default rank: the largest source rank (3).
  layer.add_weighted_adapter("svd_default", {"lora", "lora2"}, {1.0, 1.0});
  EXPECT_EQ(layer.template adapter<LoRA<T>>("svd_default").rank(), 3);
  // Clamp: every factor entry within ±(the quantile of all of them); q = 1 changes nothing.
  layer.add_weighted_adapter("clamp1", {"lora", "c3a"}, {1.0, 1.0}, Combination::SVD, 3, 1.0);
  layer.add_weighted_adapter("plain", {"lora", "c3a"}, {1.0, 1.0}, Combination::SVD, 3);
  EXPECT_LT(max_rel_diff(delta_of(layer, "clamp1"), delta_of(layer, "plain")), tol);
  layer.add_weighted_adapter("clamp", {"lora", "c3a"}, {1.0, 1.0}, Combination::SVD, 3, 0.6);
  const auto& plain = layer.template adapter<LoRA<T>>("plain");
  std::vector<T> entries(plain.B().data(), plain.B().data() + plain.B().size());
  entries.insert(entries.end(), plain.A().data(), plain.A().data() + plain.A().size());
  std::sort(entries.begin(), entries.end());
  const double at = 0.6 * static_cast<double>(entries.size() - 1);
  const auto k = static_cast<std::size_t>(at);
  const T high = T(entries[k] + (at - static_cast<double>(k)) * (entries[k + 1] - entries[k]));
  const auto& clamped = layer.template adapter<LoRA<T>>("clamp");
  EXPECT_LT(max_rel_diff(Matrix<T>(clamped.A()), Matrix<T>(plain.A().cwiseMax(-high).cwiseMin(high))), tol);
  EXPECT_LT(max_rel_diff(Matrix<T>(clamped.B()), Matrix<T>(plain.B().cwiseMax(-high).cwiseMin(high))), tol);
}

TEST(MultiAdapted, WeightedCombinationsRefuseWhatTheyCannotCombine) {
  auto layer = six_adapters<double>();
  layer.add_adapter("lora2", LoRA<double>(kIn, kOut, {.r = 2}));
  layer.add_adapter("biased", LoRA<double>(kIn, kOut, {.r = 2, .lora_bias = true}));
  const std::string who = "MultiAdapted::add_weighted_adapter: ";
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("lora", {"lora2"}, {1.0}), who + "an adapter named 'lora' exists already");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "lora2"}, {1.0}),
                    who + "expected one weight per adapter (at least one adapter), got 2 adapters and 1 weights");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {}, {}), "got 0 adapters and 0 weights");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora"}, {std::nan("")}), who + "expected finite weights");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "c3a"}, {1.0, 1.0}, Combination::Cat),
                    who + "'c3a' is not a LoRA adapter; Combination::Cat combines LoRA factors");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "lora2"}, {1.0, 1.0}, Combination::Linear),
                    who + "Combination::Linear needs equal ranks (PEFT's rule); 'lora' has r = 3, 'lora2' r = 2");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "red"}, {1.0, 1.0}, Combination::Dense),
                    who + "'red' has no dense ΔW");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "dora"}, {1.0, 1.0}, Combination::SVD, 2),
                    who + "'dora' has no dense ΔW");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"c3a"}, {1.0}), "'c3a' has no rank to default to");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora"}, {1.0}, Combination::Cat, 2),
                    who + "a rank applies to Combination::SVD only, got 2");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora"}, {1.0}, Combination::SVD, 7),
                    who + "expected a rank in [1, 6] (min(d_in, d_out)), got 7");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora"}, {1.0}, Combination::SVD, 2, 1.5),
                    who + "svd_clamp must be in (0, 1], got 1.5");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "biased"}, {1.0, 1.0}, Combination::Cat),
                    who + "'biased' has a lora_B bias (lora_bias)");
  EXPECT_PEFT_ERROR(layer.add_weighted_adapter("x", {"lora", "nope"}, {1.0, 1.0}),
                    "MultiAdapted::add_weighted_adapter: no adapter named 'nope'");
  EXPECT_EQ(layer.adapter_names().size(), 8u);  // nothing was added
}

/// A directory of its own under the system's temporary directory, removed afterwards.
struct ScratchDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("peft_multi_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  ScratchDir() {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
};

/// Saves `adapter` for module "fc" over `base` in `dir`; returns the layer's output on X.
template <class A>
Matrix<double> save_one(const std::filesystem::path& dir, const Linear<double>& base, A adapter, io::PeftConfig config,
                        const Matrix<double>& X) {
  Adapted<A> layer(base, std::move(adapter));
  io::save_peft<double>(dir, std::move(config), {{"fc", layer}});
  return layer.forward(X);
}

TEST(MultiAdapted, LoadsDirectoriesByNameAndHotSwapsWeightsInPlace) {
  ScratchDir scratch;
  Rng rng(5);
  const Linear<double> base = Linear<double>::random(kIn, kOut, rng);
  const Matrix<double> X = random_matrix<double>(4, kIn, 12);
  const LoRAConfig lora{.r = 3, .alpha = 6};
  const Matrix<double> Y_first = save_one(scratch.path / "first", base, randomized(LoRA<double>(kIn, kOut, lora), 70),
                                          io::peft_config(lora), X);
  const Matrix<double> Y_second = save_one(scratch.path / "second", base, randomized(LoRA<double>(kIn, kOut, lora), 80),
                                           io::peft_config(lora), X);
  const Matrix<double> Y_surm =
      save_one(scratch.path / "surm", base, randomized(SURM<double>(kIn, kOut, {.structure = Structure::Circulant}), 90),
               io::peft_config(SURMConfig{.structure = Structure::Circulant}), X);

  MultiAdapted<double> layer(base);
  io::add_adapter(layer, "serve", io::load_peft<double>(scratch.path / "first"), "fc");
  io::add_adapter(layer, "structured", io::load_peft<double>(scratch.path / "surm"), "fc");
  // (The files hold float32, as PEFT's do: the loaded weights are the saved ones rounded.)
  layer.set_adapter("serve");
  EXPECT_LT(max_rel_diff(layer.forward(X), Y_first), 1e-6);
  layer.set_adapter("structured");
  EXPECT_LT(max_rel_diff(layer.forward(X), Y_surm), 1e-6);

  // Hot swap: the same storage, the second directory's weights.
  layer.set_adapter("serve");
  const double* storage = layer.parameters("serve")[0].value.data();
  io::hotswap_adapter(layer, "serve", io::load_peft<double>(scratch.path / "second"), "fc");
  EXPECT_EQ(layer.parameters("serve")[0].value.data(), storage);
  EXPECT_LT(max_rel_diff(layer.forward(X), Y_second), 1e-6);
  EXPECT_GT(max_rel_diff(Y_first, Y_second), 1e-2);  // the swap did change the output

  // Refused, and the weights stay: another alpha, another rank, another kind, no such module or name.
  const Matrix<double> before = layer.forward(X);
  const LoRAConfig other_alpha{.r = 3, .alpha = 12}, other_rank{.r = 2, .alpha = 6};
  save_one(scratch.path / "alpha", base, LoRA<double>(kIn, kOut, other_alpha), io::peft_config(other_alpha), X);
  save_one(scratch.path / "rank", base, LoRA<double>(kIn, kOut, other_rank), io::peft_config(other_rank), X);
  EXPECT_PEFT_ERROR(io::hotswap_adapter(layer, "serve", io::load_peft<double>(scratch.path / "alpha"), "fc"),
                    "the configurations differ (lora_alpha: the config gives 12.0, the layer has 6.0)");
  EXPECT_PEFT_ERROR(io::hotswap_adapter(layer, "serve", io::load_peft<double>(scratch.path / "rank"), "fc"),
                    "the configurations differ (r: the config gives 2, the layer has 3");
  EXPECT_PEFT_ERROR(io::hotswap_adapter(layer, "serve", io::load_peft<double>(scratch.path / "surm"), "fc"),
                    "the layer's adapter is of another kind than the directory's SURM adapter");
  EXPECT_PEFT_ERROR(io::hotswap_adapter(layer, "serve", io::load_peft<double>(scratch.path / "first"), "q_proj"),
                    "module 'q_proj': the directory has no adapter for this module");
  EXPECT_PEFT_ERROR(io::hotswap_adapter(layer, "nope", io::load_peft<double>(scratch.path / "first"), "fc"),
                    "no adapter named 'nope'");
  EXPECT_PEFT_ERROR(io::add_adapter(layer, "serve", io::load_peft<double>(scratch.path / "first"), "fc"),
                    "an adapter named 'serve' exists already");
  EXPECT_EQ(layer.forward(X), before);

  // A directory that trains the base bias cannot go onto a shared base.
  Adapted<LoRA<double>> with_bias(base, LoRA<double>(kIn, kOut, lora));
  with_bias.set_base_bias_trainable(true);
  io::PeftConfig bias_config = io::peft_config(lora);
  bias_config.bias = "lora_only";
  io::save_peft<double>(scratch.path / "bias", bias_config, {{"fc", with_bias}});
  EXPECT_PEFT_ERROR(io::add_adapter(layer, "biased", io::load_peft<double>(scratch.path / "bias"), "fc"),
                    "trains the base layer's bias (bias = \"lora_only\")");
}

TEST(MultiAdapted, SavesAndLoadsEveryAdapterAsOnePeftTree) {
  ScratchDir scratch;
  Rng rng(9);
  const Linear<double> q_base = Linear<double>::random(kIn, kOut, rng), v_base = Linear<double>::random(kIn, kOut, rng);
  MultiAdapted<double> q(q_base), v(v_base);
  q.add_adapter("default", randomized(LoRA<double>(kIn, kOut, {.r = 2, .alpha = 4}), 120));
  v.add_adapter("default", randomized(LoRA<double>(kIn, kOut, {.r = 2, .alpha = 4}), 130));
  q.add_adapter("circulant", randomized(SURM<double>(kIn, kOut, {.structure = Structure::Circulant}), 140));
  v.add_adapter("tone", randomized(RED<double>(kIn, kOut), 150));
  io::save_peft_tree<double>(scratch.path, {{"q_proj", &q}, {"v_proj", &v}});
  for (const char* file : {"adapter_config.json", "circulant/adapter_config.json", "tone/adapter_model.safetensors"})
    EXPECT_TRUE(std::filesystem::exists(scratch.path / file)) << file;
  EXPECT_EQ(io::load_peft<double>(scratch.path / "circulant").modules(), std::vector<std::string>{"q_proj"});

  MultiAdapted<double> q2(q_base), v2(v_base);
  EXPECT_EQ(io::load_peft_tree<double>(scratch.path, {{"q_proj", &q2}, {"v_proj", &v2}}),
            (std::vector<std::string>{"default", "circulant", "tone"}));
  EXPECT_EQ(q2.adapter_names(), (std::vector<std::string>{"default", "circulant"}));
  EXPECT_EQ(v2.adapter_names(), (std::vector<std::string>{"default", "tone"}));
  const Matrix<double> X = random_matrix<double>(3, kIn, 14);
  for (auto [saved, loaded] : {std::pair{&q, &q2}, std::pair{&v, &v2}})
    for (const auto& name : saved->adapter_names()) {
      saved->set_adapter(name);
      loaded->set_adapter(name);
      EXPECT_LT(max_rel_diff(loaded->forward(X), saved->forward(X)), 1e-6) << name;  // float32 files
    }

  MultiAdapted<double> only_q(q_base);
  EXPECT_PEFT_ERROR(io::load_peft_tree<double>(scratch.path, {{"q_proj", &only_q}}),
                    "adapter 'default' adapts module 'v_proj', which is not among the modules given");
  EXPECT_PEFT_ERROR(io::load_peft_tree<double>(scratch.path / "tone" / "nowhere", {{"q_proj", &only_q}}), "not a directory");
  q.add_adapter("../up", LoRA<double>(kIn, kOut, {.r = 1}));
  EXPECT_PEFT_ERROR(io::save_peft_tree<double>(scratch.path / "other", {{"q_proj", &q}}),
                    "adapter name '../up' cannot be a folder name");
}

TEST(MultiAdapted, RefusesMisuseWithClearErrors) {
  auto layer = six_adapters<double>();
  const Matrix<double> X = random_matrix<double>(3, kIn, 8);
  EXPECT_PEFT_ERROR(layer.add_adapter("lora", LoRA<double>(kIn, kOut)),
                    "MultiAdapted::add_adapter: an adapter named 'lora' exists already");
  EXPECT_PEFT_ERROR(layer.add_adapter("", LoRA<double>(kIn, kOut)), "expected a non-empty adapter name");
  EXPECT_PEFT_ERROR(layer.add_adapter("wide", LoRA<double>(kIn + 1, kOut)),
                    "adapter 'wide' is 6 x 9 (d_out x d_in); expected the base layer's 6 x 8");
  EXPECT_PEFT_ERROR(layer.set_adapter("nope"), "MultiAdapted::set_adapter: no adapter named 'nope'; expected one of "
                                               "[lora, c3a, ff, red, surm, dora]");
  EXPECT_PEFT_ERROR(layer.set_adapter({"lora", "lora"}), "'lora' is listed twice");
  EXPECT_PEFT_ERROR(layer.set_adapter({"lora", "dora"}), "'dora' reads the base's weights (DoRA) and cannot be combined");
  EXPECT_PEFT_ERROR(layer.delete_adapter("nope"), "MultiAdapted::delete_adapter: no adapter named 'nope'");
  EXPECT_PEFT_ERROR(layer.adapter<RED<double>>("lora"), "MultiAdapted::adapter: adapter 'lora' is not of the type");
  EXPECT_PEFT_ERROR(layer.forward(random_matrix<double>(3, kIn + 1, 9)),
                    "MultiAdapted::forward: X must have in_features = 8 columns, got 3 x 9");
  EXPECT_PEFT_ERROR(layer.forward(X, std::vector<int>{0, 1}), "expected 3 row_adapter entries");
  EXPECT_PEFT_ERROR(layer.forward(X, std::vector<int>{0, 6, 1}),
                    "row_adapter[1] = 6; expected -1 (base only) or an adapter index in [0, 6)");
  EXPECT_PEFT_ERROR(layer.forward(X, std::vector<int>{0, -2, 1}), "row_adapter[1] = -2");
  EXPECT_PEFT_ERROR(layer.backward(random_matrix<double>(3, kOut, 10)), "MultiAdapted::backward: expected a forward first");

  layer.set_adapter("lora");
  layer.forward(X);
  EXPECT_PEFT_ERROR(layer.backward(random_matrix<double>(2, kOut, 10)), "dY must be 3 x 6 like the last forward's output");
  layer.backward(random_matrix<double>(3, kOut, 10));
  EXPECT_PEFT_ERROR(layer.backward(random_matrix<double>(3, kOut, 10)), "one backward per forward");
  layer.forward(X);
  layer.set_adapter("c3a");  // the forward's adapters changed: its backward is void
  EXPECT_PEFT_ERROR(layer.backward(random_matrix<double>(3, kOut, 10)), "expected a forward first");
  EXPECT_EQ(layer.index_of("red"), 3);
  EXPECT_PEFT_ERROR(layer.index_of("nope"), "MultiAdapted::index_of: no adapter named 'nope'");
  EXPECT_PEFT_ERROR(MultiAdapted<double>(std::shared_ptr<Linear<double>>{}), "expected a base layer, got a null pointer");
}

}  // namespace
}  // namespace peft::test
