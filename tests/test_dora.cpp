// DoRA: dense reference (float and double), finite differences with the norm
// held constant as PEFT detaches it, the weight norm's accuracy under
// cancellation, dropout, merge/unmerge, the magnitude's init, the base bias,
// bad input, and PEFT 0.21.2's own numbers (golden/peft/dora_*).
#include <peft/adapters/dora.hpp>
#include <peft/core/adapted.hpp>
#include <peft/core/adapted_layer.hpp>
#include <peft/io/peft_dir.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/testing/gradcheck.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <sstream>

#include "adapter_checks.hpp"
#include "test_util.hpp"

namespace peft::test {
namespace {

template <class T>
class DoRATest : public ::testing::Test {};
TYPED_TEST_SUITE(DoRATest, Precisions);

static_assert(Adapter<DoRA<float>> && Mergeable<DoRA<double>> && AddsDelta<DoRA<double>> &&
              EditsOutput<DoRA<double>> && UsesBase<DoRA<double>> && HasBaseDeltaWeight<DoRA<double>> &&
              !HasDeltaWeight<DoRA<double>> && MergesItself<DoRA<double>>);

using MD = Matrix<double>;
using VD = Vector<double>;

/// PEFT's DoRA linear layer in dense double: Z = X·Wᵀ + s·X·Aᵀ·Bᵀ, Y = c ⊙ Z + b, c = m / n,
/// with the norm n passed in (‖W + s·B·A‖, or a frozen one for finite differences).
struct Dense {
  MD W, A, B;
  VD b, m;
  double s = 1;

  VD norm() const { return (W + s * B * A).rowwise().norm(); }
  MD z(const MD& X) const { return X * W.transpose() + s * X * A.transpose() * B.transpose(); }
  MD forward(const MD& X, const VD& n) const {
    MD Y = z(X).array().rowwise() * m.cwiseQuotient(n).transpose().array();
    if (b.size()) Y.rowwise() += b.transpose();
    return Y;
  }
  MD forward(const MD& X) const { return forward(X, norm()); }
  double loss(const MD& X, const MD& G, const VD& n) const { return (forward(X, n).array() * G.array()).sum(); }
  /// The layer with ΔW folded in: c ⊙ (W + s·B·A).
  MD merged() const { return (W + s * B * A).array().colwise() * m.cwiseQuotient(norm()).array(); }
};

template <class T>
Dense dense_of(const Adapted<DoRA<T>>& layer) {
  const auto& a = layer.adapter();
  return {layer.base().weight().template cast<double>(), a.A().template cast<double>(),
          a.B().template cast<double>(), layer.base().bias().template cast<double>(),
          a.magnitude().row(0).transpose().template cast<double>(), static_cast<double>(a.scaling())};
}

/// A layer with non-zero B (init None) and a magnitude moved away from its init,
/// so that c ≠ 1 and every term of the forward and backward matters.
template <class T>
Adapted<DoRA<T>> make_layer(Index d_in, Index d_out, DoRAConfig config, bool bias = true, std::uint64_t seed = 1) {
  config.init = LoRAInit::None;
  auto layer = wrap(DoRA<T>(d_in, d_out, config), bias, seed);
  auto m = layer.adapter().magnitude();
  m.array() *= (T(1) + T(0.3) * random_matrix<T>(1, d_out, seed + 7).array());
  return layer;
}

TYPED_TEST(DoRATest, ForwardEqualsDenseReference) {
  using T = TypeParam;
  for (const bool rslora : {false, true})
    for (const bool bias : {true, false}) {
      auto layer = make_layer<T>(48, 40, {.r = 8, .alpha = 16, .rslora = rslora}, bias);
      const double s = rslora ? 16.0 / std::sqrt(8.0) : 2.0;
      EXPECT_NEAR(layer.adapter().scaling(), s, 1e-6);
      const Dense ref = dense_of(layer);
      const MD X = random_matrix<double>(7, 48, 5);
      EXPECT_LT(max_rel_diff(layer.forward(X.cast<T>()), ref.forward(X)), 10 * tolerance<T>())
          << "rslora " << rslora << " bias " << bias;
      EXPECT_LT(max_rel_diff(layer.adapter().weight_norm(layer.base()), ref.norm()), tolerance<T>());
      // ΔW with Y = X·(W + ΔW)ᵀ + b, for the unmerged base.
      EXPECT_LT(max_rel_diff(layer.adapter().delta_weight(layer.base()), (ref.merged() - ref.W).eval()),
                10 * tolerance<T>());
    }
}

TYPED_TEST(DoRATest, BackwardEqualsDenseReferenceWithTheNormDetached) {
  using T = TypeParam;
  auto layer = make_layer<T>(32, 24, {.r = 4, .alpha = 6});
  layer.set_base_bias_trainable(true);
  const MD X = random_matrix<double>(5, 32, 5), G = random_matrix<double>(5, 24, 6);
  layer.forward(X.cast<T>());
  const Matrix<T> dX = layer.backward(G.cast<T>());
  const Dense ref = dense_of(layer);
  const VD n = ref.norm(), c = ref.m.cwiseQuotient(n);
  const MD dZ = G.array().rowwise() * c.transpose().array();  // the norm a constant: dZ = c ⊙ dY
  EXPECT_LT(max_rel_diff(dX, (dZ * (ref.W + ref.s * ref.B * ref.A)).eval()), 10 * tolerance<T>());
  const auto params = layer.parameters();
  ASSERT_EQ(params.size(), 4u);
  EXPECT_EQ(params[0].name, "lora_A");
  EXPECT_EQ(params[1].name, "lora_B");
  EXPECT_EQ(params[2].name, "lora_magnitude_vector");
  EXPECT_EQ(params[3].name, "base_layer.bias");
  EXPECT_LT(max_rel_diff(params[0].grad, (ref.s * ref.B.transpose() * dZ.transpose() * X).eval()),
            10 * tolerance<T>());
  EXPECT_LT(max_rel_diff(params[1].grad, (ref.s * dZ.transpose() * X * ref.A.transpose()).eval()),
            10 * tolerance<T>());
  const MD dm = ((G.array() * ref.z(X).array()).colwise().sum().transpose() / n.array()).matrix().transpose();
  EXPECT_LT(max_rel_diff(params[2].grad, dm), 10 * tolerance<T>());
  // b passes the edit unscaled: its gradient is Σ dY, not Σ c ⊙ dY.
  EXPECT_LT(max_rel_diff(params[3].grad, G.colwise().sum().eval()), 10 * tolerance<T>());
}

// Central differences of the true function include the norm's derivative,
// which PEFT detaches (DoRA paper §4.3) and so do we. X, m and b do not enter
// the norm: their differences are the layer's own. For lora_A and lora_B the
// differences are taken of the same function with the norm frozen at its value
// for the current A and B (the detached graph), and the true function's
// differences are shown to disagree, so the check would notice a norm that is
// not detached.
TEST(DoRA, GradientsMatchFiniteDifferencesWithTheNormFrozen) {
  for (const bool rslora : {false, true}) {
    auto layer = make_layer<double>(20, 16, {.r = 3, .alpha = 5, .rslora = rslora});
    layer.set_base_bias_trainable(true);
    const MD X = random_matrix<double>(5, 20, 7), G = random_matrix<double>(5, 16, 8);
    const auto errors = testing::check_gradients(layer, X, G);
    ASSERT_EQ(errors.size(), 5u);  // X, lora_A, lora_B, lora_magnitude_vector, base_layer.bias
    for (const auto& e : errors) {
      if (e.name == "lora_A" || e.name == "lora_B") {
        EXPECT_GT(e.error, 1e-4) << e.name << ": the true function's derivative includes the norm's";
        continue;
      }
      EXPECT_LT(e.error, 1e-7) << e.name;
    }
    // check_gradients left the analytic gradients in place; now the frozen-norm differences.
    Dense ref = dense_of(layer);
    const VD n0 = ref.norm();
    auto params = layer.parameters();
    const auto dA = testing::numerical_gradient([&] { return ref.loss(X, G, n0); }, ref.A);
    const auto dB = testing::numerical_gradient([&] { return ref.loss(X, G, n0); }, ref.B);
    const double errA = testing::relative_error(params[0].grad, dA), errB = testing::relative_error(params[1].grad, dB);
    EXPECT_LT(errA, 1e-7);
    EXPECT_LT(errB, 1e-7);
    std::ostringstream text;
    text << std::scientific << errA << " " << errB;
    RecordProperty(std::string("gradcheck_frozen_norm_A_B") + (rslora ? "_rslora" : ""), text.str());
  }
}

// ‖W_i + s·(B·A)_i‖ is summed from ‖W_i‖², W·Aᵀ and A·Aᵀ; rows where W + s·B·A
// nearly cancels fall back to the dense row. Float against a double dense
// reference, for shapes that exercise every kernel tail (rows not a multiple
// of the row block, columns not of the vector width, r not of 4).
TEST(DoRA, WeightNormIsAccurateInFloatIncludingCancellingRows) {
  for (const Index d_in : {1, 7, 16, 37, 130})
    for (const Index d_out : {1, 5, 12})
      for (const Index r : {1, 3, 4, 9}) {
        Linear<float> base(random_matrix<float>(d_out, d_in, 3 + d_in), Vector<float>());
        DoRA<float> dora(d_in, d_out, {.r = r, .alpha = 2.0 * r, .init = LoRAInit::None, .seed = 4});
        // Rows 0 and (if any) 2: W_i = −s·(B·A)_i + 1e-3·noise, so W + s·B·A is ~1e-3 of W.
        const MD dense_lora = dora.scaling() * dora.B().cast<double>() * dora.A().cast<double>();
        const MD noise = random_matrix<double>(d_out, d_in, 9);
        for (Index i = 0; i < d_out; i += 2)
          base.weight().row(i) = (-dense_lora.row(i) + 1e-3 * noise.row(i)).cast<float>();
        const MD W = base.weight().cast<double>();
        const VD expected = (W + dora.scaling() * dora.B().cast<double>() * dora.A().cast<double>()).rowwise().norm();
        const Vector<float> got = dora.weight_norm(base);
        const double err = (got.cast<double>() - expected).cwiseQuotient(expected).cwiseAbs().maxCoeff();
        EXPECT_LT(err, 2e-6) << d_in << " x " << d_out << " r " << r;
      }
}

TYPED_TEST(DoRATest, MergeMatchesAndUnmergeRestoresAsPeft) {
  using T = TypeParam;
  for (const bool bias : {true, false}) {
    auto layer = make_layer<T>(48, 40, {.r = 8, .alpha = 16}, bias);
    const Dense ref = dense_of(layer);
    const MD X = random_matrix<double>(6, 48, 3);
    const Matrix<T> W = layer.base().weight();
    const Vector<T> b = layer.base().bias();
    const Matrix<T> Y = layer.forward(X.cast<T>());
    const Matrix<T> dW = layer.adapter().delta_weight(layer.base());
    layer.merge();
    EXPECT_TRUE(layer.merged());
    EXPECT_LT(max_rel_diff(layer.base().weight(), ref.merged()), 10 * tolerance<T>());
    EXPECT_EQ(layer.base().bias(), b);  // the bias is not scaled
    EXPECT_LT(max_rel_diff(layer.forward(X.cast<T>()), Y), 10 * tolerance<T>());
    // While merged, ΔW is the merged weight minus the one unmerge restores.
    EXPECT_LT(max_rel_diff(layer.adapter().delta_weight(layer.base()), dW), 10 * tolerance<T>());
    layer.unmerge();
    EXPECT_FALSE(layer.merged());
    EXPECT_LT(max_rel_diff(layer.base().weight(), W), (std::is_same_v<T, float> ? 1e-6 : 1e-14));
    EXPECT_LT(max_rel_diff(layer.forward(X.cast<T>()), Y), 10 * tolerance<T>());
  }
  // Through the type-erased layer: ΔW is the adapter's, against its own base.
  auto layer = make_layer<T>(12, 10, {.r = 2, .alpha = 4});
  const Dense ref = dense_of(layer);
  AdaptedLayer<T> erased(std::move(layer), "LORA");
  ASSERT_TRUE(erased.has_delta_weight());
  EXPECT_LT(max_rel_diff(erased.delta_weight(), (ref.merged() - ref.W).eval()), 10 * tolerance<T>());
  erased.merge();
  erased.unmerge();
  EXPECT_LT(max_rel_diff(erased.base().weight(), ref.W), 10 * tolerance<T>());
}

// PEFT's init: m = ‖W + s·B·A‖ of the base at creation (‖W‖ with B = 0), so the
// layer starts as the frozen one. Ours happens when the adapter meets its base.
TYPED_TEST(DoRATest, MagnitudeStartsAsPeftsWhenTheAdapterMeetsItsBase) {
  using T = TypeParam;
  DoRA<T> fresh(30, 20, {.r = 4, .alpha = 8});
  EXPECT_TRUE(fresh.magnitude().array().isNaN().all());  // no base yet: nothing that looks trained
  auto layer = wrap(std::move(fresh));
  const MD W = layer.base().weight().template cast<double>();
  EXPECT_LT(max_rel_diff(layer.adapter().magnitude().row(0).transpose(), W.rowwise().norm().eval()), tolerance<T>());
  const Matrix<T> X = random_matrix<T>(4, 30, 3);
  EXPECT_LT(max_rel_diff(layer.forward(X), layer.base().forward(X)), tolerance<T>());

  // Init None (B ≠ 0): the norm of W + s·B·A, as PEFT's update_layer computes it.
  auto none = wrap(DoRA<T>(30, 20, {.r = 4, .alpha = 8, .init = LoRAInit::None}));
  EXPECT_LT(max_rel_diff(none.adapter().magnitude().row(0).transpose(), dense_of(none).norm()), tolerance<T>());
  EXPECT_LT(max_rel_diff(none.forward(X), (none.base().forward(X) + X * none.adapter().delta_weight(none.base()).transpose()).eval()),
            10 * tolerance<T>());

  // Values written before the adapter met a base (a loaded file) are kept.
  DoRA<T> loaded(30, 20, {.r = 4});
  loaded.magnitude().setConstant(T(2));
  auto kept = wrap(std::move(loaded));
  EXPECT_EQ(kept.adapter().magnitude().minCoeff(), T(2));
  EXPECT_EQ(kept.adapter().magnitude().maxCoeff(), T(2));
  // init_magnitude sets it again; the constructor from a base does it at once.
  kept.adapter().init_magnitude(kept.base());
  EXPECT_LT(max_rel_diff(kept.adapter().magnitude().row(0).transpose(), dense_of(kept).norm()), tolerance<T>());
  const DoRA<T> direct(kept.base(), {.r = 4});
  EXPECT_LT(max_rel_diff(direct.magnitude(), kept.adapter().magnitude()), tolerance<T>());
}

TYPED_TEST(DoRATest, GradientsAccumulateUntilZeroGradAndCountsAreRight) {
  using T = TypeParam;
  auto layer = make_layer<T>(20, 12, {.r = 3, .alpha = 3});
  const Matrix<T> X = random_matrix<T>(4, 20, 3), G = random_matrix<T>(4, 12, 4);
  layer.forward(X);
  const Matrix<T> dX1 = layer.backward(G);
  const Vector<T> once = layer.adapter().parameter_block().grads();
  layer.forward(X);  // one backward per forward
  const Matrix<T> dX2 = layer.backward(G);
  EXPECT_EQ(dX1, dX2);
  EXPECT_LT(max_rel_diff(layer.adapter().parameter_block().grads(), (2 * once).eval()), tolerance<T>());
  layer.adapter().zero_grad();
  EXPECT_EQ(layer.adapter().parameter_block().grads().cwiseAbs().maxCoeff(), T(0));
  EXPECT_EQ(layer.adapter().num_params(), 3 * (20 + 12) + 12);
  EXPECT_DOUBLE_EQ(layer.adapter().flops(4), 6.0 * 4 * 3 * 32 + 2.0 * 12 * 20 * 4);
}

// PEFT with dropout in training: Y = X·Wᵀ + b + (c − 1)⊙(D(X)·Wᵀ) + c⊙(s·D(X)·Aᵀ·Bᵀ).
TEST(DoRA, DropoutFollowsPeftsDropoutBranch) {
  auto layer = make_layer<double>(30, 20, {.r = 4, .alpha = 8, .dropout = 0.3, .seed = 3});
  layer.set_base_bias_trainable(true);
  const MD X = random_matrix<double>(6, 30, 3), G = random_matrix<double>(6, 20, 4);
  const Dense ref = dense_of(layer);
  const MD Y = layer.forward(X);
  const MD dX = layer.backward(G);
  // DoRA seeds its dropout with seed + 1: an equal Dropout draws the same mask.
  Dropout<double> dropout(0.3, 3 + 1);
  MD Xd;
  dropout.forward(X, Xd);
  const MD mask = dropout.mask();
  EXPECT_GT((mask.array() == 0.0).count(), 0);
  const VD n = ref.norm(), c = ref.m.cwiseQuotient(n);
  const MD base_d = Xd * ref.W.transpose(), lora_d = ref.s * Xd * ref.A.transpose() * ref.B.transpose();
  MD expected = X * ref.W.transpose() + (base_d.array().rowwise() * (c.array() - 1).transpose()).matrix() +
                (lora_d.array().rowwise() * c.transpose().array()).matrix();
  expected.rowwise() += ref.b.transpose();
  EXPECT_LT(max_rel_diff(Y, expected), 1e-13);
  const MD Gc = G.array().rowwise() * c.transpose().array(), Gc1 = G.array().rowwise() * (c.array() - 1).transpose();
  const MD expected_dX = G * ref.W + ((Gc1 * ref.W + ref.s * Gc * ref.B * ref.A).array() * mask.array()).matrix();
  EXPECT_LT(max_rel_diff(dX, expected_dX), 1e-13);
  const auto params = layer.parameters();
  EXPECT_LT(max_rel_diff(params[0].grad, (ref.s * ref.B.transpose() * Gc.transpose() * Xd).eval()), 1e-13);
  EXPECT_LT(max_rel_diff(params[1].grad, (ref.s * Gc.transpose() * Xd * ref.A.transpose()).eval()), 1e-13);
  const MD dm = ((G.array() * (base_d + lora_d).array()).colwise().sum().transpose() / n.array()).matrix().transpose();
  EXPECT_LT(max_rel_diff(params[2].grad, dm), 1e-13);
  EXPECT_LT(max_rel_diff(params[3].grad, G.colwise().sum().eval()), 1e-13);
  EXPECT_DOUBLE_EQ(layer.adapter().flops(6) - 4.0 * 6 * 30 * 20, 6.0 * 6 * 4 * 50 + 2.0 * 20 * 30 * 5);
  // Eval mode: no dropout, the fast path, equal to the merged layer.
  layer.set_training(false);
  EXPECT_LT(max_rel_diff(layer.forward(X), ref.forward(X)), 1e-13);
  const MD Y_eval = layer.forward(X);
  layer.merge();
  EXPECT_LT(max_rel_diff(layer.forward(X), Y_eval), 1e-13);
}

// Adapted points the adapter at its own base before every call, wherever the
// layer has moved to; a bare DoRA without a base refuses to run.
TEST(DoRA, FollowsItsBaseWhenTheLayerMoves) {
  auto layer = make_layer<double>(10, 8, {.r = 2, .alpha = 4});
  const MD X = random_matrix<double>(3, 10, 2);
  const MD Y = layer.forward(X);
  std::vector<Adapted<DoRA<double>>> layers;
  layers.push_back(std::move(layer));
  layers.reserve(8);  // moves it again
  EXPECT_EQ(layers[0].forward(X), Y);
  const Dense ref = dense_of(layers[0]);
  const MD G = random_matrix<double>(3, 8, 4);
  const MD dZ = G.array().rowwise() * ref.m.cwiseQuotient(ref.norm()).transpose().array();
  EXPECT_LT(max_rel_diff(layers[0].backward(G), (dZ * (ref.W + ref.s * ref.B * ref.A)).eval()), 1e-13);
  DoRA<double> bare(10, 8, {.r = 2});
  MD out = MD::Zero(3, 8);
  EXPECT_PEFT_ERROR(bare.forward_delta(X, out), "DoRA::forward_delta: no base layer; DoRA reads W and b, call "
                                                "use_base(base) first");
}

TEST(DoRA, RejectsInvalidConfigsAndBadInput) {
  EXPECT_PEFT_ERROR(DoRA<double>(48, 64, {.r = 0}), "DoRA: rank must be >= 1, got 0");
  EXPECT_PEFT_ERROR(DoRA<double>(48, 64, {.alpha = 0}), "DoRA: alpha must be a finite value > 0, got 0");
  EXPECT_PEFT_ERROR(DoRA<double>(48, 64, {.alpha = std::numeric_limits<double>::infinity()}),
                    "DoRA: alpha must be a finite value > 0, got inf");
  EXPECT_PEFT_ERROR(DoRA<double>(48, 64, {.dropout = 1.0}), "DoRA: dropout must be in [0, 1), got 1");
  EXPECT_PEFT_ERROR(DoRA<double>(0, 64, {}), "DoRA: d_in and d_out must be positive, got d_in = 0");

  const Linear<double> wrong(random_matrix<double>(64, 40, 1));
  DoRA<double> dora(48, 64, {});
  EXPECT_PEFT_ERROR(dora.use_base(wrong), "DoRA::use_base: base must be d_out x d_in = 64 x 48, got 64 x 40");
  EXPECT_PEFT_ERROR(dora.init_magnitude(wrong), "DoRA::weight_norm: base must be d_out x d_in = 64 x 48, got 64 x 40");
  EXPECT_PEFT_ERROR(dora.delta_weight(wrong), "DoRA::delta_weight: base must be d_out x d_in = 64 x 48, got 64 x 40");
  EXPECT_PEFT_ERROR(Adapted(Linear<double>(Matrix<double>::Zero(64, 40)), DoRA<double>(48, 64, {})),
                    "Adapted: adapter is 64 x 48 (d_out x d_in) but the base layer is 64 x 40");

  auto layer = make_layer<double>(48, 64, {.r = 8, .alpha = 16}, /*bias=*/false);
  EXPECT_PEFT_ERROR(layer.forward(MD::Zero(5, 47)), "X must have in_features = 48 columns, got 5 x 47");
  EXPECT_PEFT_ERROR(layer.backward(MD::Zero(5, 64)), "Adapted::backward: called before forward");
  EXPECT_PEFT_ERROR(layer.set_base_bias_trainable(true), "the base layer has no bias");
  layer.forward(MD::Zero(5, 48));
  EXPECT_PEFT_ERROR(layer.backward(MD::Zero(4, 64)), "dY must be N x out_features = 5 x 64");
  EXPECT_PEFT_ERROR(layer.adapter().backward_delta(MD::Zero(4, 64), *std::make_unique<MD>()),
                    "DoRA::backward_delta: dY must be 5 x 64 (N x d_out of the last forward), got 4 x 64");
  MD dH = MD::Zero(3, 64);
  EXPECT_PEFT_ERROR(layer.adapter().backward_output(dH), "DoRA::backward_output: dY must be 5 x 64");
  EXPECT_PEFT_ERROR(layer.adapter().unmerge_from(layer.base()), "DoRA::unmerge: not merged");

  // A zero magnitude would zero its row of W for good: merge refuses, base unchanged.
  const MD W = layer.base().weight();
  layer.adapter().magnitude()(0, 3) = 0;
  EXPECT_PEFT_ERROR(layer.merge(), "DoRA::merge: row 3 would be scaled by m / ‖W + s·B·A‖ = 0 / ");
  EXPECT_FALSE(layer.merged());
  EXPECT_EQ(layer.base().weight(), W);
  layer.adapter().magnitude()(0, 3) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_PEFT_ERROR(layer.merge(), "parameter 'lora_magnitude_vector' holds NaN or Inf");
}

// ---- Hugging Face PEFT 0.21.2's own numbers ------------------------------------
// golden/peft/dora_*: written by tests/peers_manual/dora_golden.py (PEFT's
// save_pretrained plus io.safetensors in the layout of golden/README.md, with
// init.*, unmerged.* and, for dropout, the masks). Loaded through load_peft.

constexpr double kGoldenTol = 1e-10;

struct GoldenRun {
  double y = 0, dx = 0, grads = 0, init = 0, merged = 0, y_merged = 0, unmerged = 0;
};

/// One module of the golden model: adapted where the directory says, else plain.
struct GoldenModule {
  std::string name;
  std::optional<AdaptedLayer<double>> adapted;
  std::optional<Linear<double>> plain;
  MD forward(const MD& x) { return adapted ? adapted->forward(x) : plain->forward(x); }
  MD backward(const MD& g) { return adapted ? adapted->backward(g) : plain->backward(g); }
};

/// Runs one golden case (the model fc2(fc1(x))) and returns the worst relative
/// difference of each kind.
GoldenRun run_golden(const std::string& name) {
  const std::string dir = kGoldenDir + "/peft/" + name;
  const auto io = io::read_safetensors(dir + "/io.safetensors");
  const auto adapters = io::load_peft<double>(dir);
  EXPECT_TRUE(adapters.config().use_dora);
  GoldenRun worst;
  auto track = [](double& slot, double v) { slot = std::max(slot, v); };
  auto tensor = [&](const std::string& key) {
    EXPECT_TRUE(io.contains(key)) << key;
    return io.contains(key) ? io.at(key).to_matrix<double>() : MD();
  };
  std::vector<GoldenModule> model;
  for (const std::string m : {"fc1", "fc2"}) {
    Vector<double> b;
    if (io.contains("base." + m + ".bias")) b = io.at("base." + m + ".bias").to_vector<double>();
    Linear<double> base(tensor("base." + m + ".weight"), b);
    GoldenModule module{m, std::nullopt, std::nullopt};
    if (!adapters.contains(m)) {
      module.plain = std::move(base);
    } else {
      // PEFT's init of the magnitude: m = ‖W + s·B·A‖ for the A and B it drew.
      const auto& c = adapters.config();
      DoRA<double> fresh(base.in_features(), base.out_features(),
                         {.r = c.rank_for(m), .alpha = c.alpha_for(m), .rslora = c.use_rslora});
      fresh.A() = tensor("init." + m + ".lora_A");
      fresh.B() = tensor("init." + m + ".lora_B");
      fresh.init_magnitude(base);
      track(worst.init, max_rel_diff(fresh.magnitude(), tensor("init." + m + ".lora_magnitude_vector")));
      module.adapted = adapters.wrap(m, std::move(base));
      EXPECT_NE(module.adapted->get<DoRA<double>>(), nullptr);
    }
    model.push_back(std::move(module));
  }
  auto run = [&](const MD& x) {
    MD h = x;
    for (auto& module : model) h = module.forward(h);
    return h;
  };
  // Dropout cases: PEFT was given the masks our layers draw (DoRA's Dropout, seed + 1).
  const MD x = tensor("x");
  track(worst.y, max_rel_diff(run(x), tensor("y")));
  MD g = tensor("dy");
  for (auto it = model.rbegin(); it != model.rend(); ++it) g = it->backward(g);
  track(worst.dx, max_rel_diff(g, tensor("dx")));
  for (auto& module : model) {
    if (!module.adapted) continue;
    for (auto& p : module.adapted->parameters()) {
      const std::string prefix = "grad.base_model.model." + module.name + ".";
      const std::string key = p.name == kBaseBiasName ? prefix + "base_layer.bias"
                                                      : prefix + std::string(p.name) + ".default.weight";
      track(worst.grads, max_rel_diff(p.grad, tensor(key)));
    }
  }
  // Merge (in eval mode, as merge_and_unload), the merged model's output, then PEFT's unmerge.
  for (auto& module : model) {
    if (!module.adapted) continue;
    auto& layer = *module.adapted;
    layer.set_training(false);
    layer.merge();
    track(worst.merged, max_rel_diff(layer.base().weight(), tensor("merged." + module.name + ".weight")));
    if (layer.base().has_bias())
      track(worst.merged, max_rel_diff(layer.base().bias().transpose(), tensor("merged." + module.name + ".bias")));
  }
  track(worst.y_merged, max_rel_diff(run(x), tensor("y_merged")));
  for (auto& module : model) {
    if (!module.adapted) continue;
    module.adapted->unmerge();
    track(worst.unmerged,
          max_rel_diff(module.adapted->base().weight(), tensor("unmerged." + module.name + ".weight")));
  }
  return worst;
}

class DoRAGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(DoRAGolden, LoadForwardBackwardMergeAndUnmergeMatchPeft) {
  const GoldenRun r = run_golden(GetParam());
  EXPECT_LT(r.y, kGoldenTol);
  EXPECT_LT(r.dx, kGoldenTol);
  EXPECT_LT(r.grads, kGoldenTol);
  EXPECT_LT(r.init, kGoldenTol);
  EXPECT_LT(r.merged, kGoldenTol);
  EXPECT_LT(r.y_merged, kGoldenTol);
  EXPECT_LT(r.unmerged, kGoldenTol);
  std::ostringstream text;
  text << std::scientific << "y " << r.y << " dx " << r.dx << " grads " << r.grads << " init " << r.init
       << " merged " << r.merged << " y_merged " << r.y_merged << " unmerged " << r.unmerged;
  RecordProperty("peft_" + GetParam(), text.str());
  std::printf("[ golden   ] %s: %s\n", GetParam().c_str(), text.str().c_str());
}

INSTANTIATE_TEST_SUITE_P(Peft, DoRAGolden,
                         ::testing::Values("dora_f64", "dora_rslora_bias_f64", "dora_dropout_f64"));

}  // namespace
}  // namespace peft::test
