// The frozen layers with a rounded weight. LinearBF16, the bfloat16 one: Rounding against a reference that
// picks the nearest bfloat16 in double arithmetic; forward and backward
// against the float32 layer it computes exactly (dequantised(), with X and dY
// rounded too on the oneDNN path) and against the float32 layer it was
// rounded from; adapters on top against the same adapters over the
// dequantised layer; merge, unmerge and their rounding; loading from
// safetensors; bad input. Built twice: portable, and with peft::onednn.
// LinearInt8, int8 with per-row scales: quantisation bounds, products against
// the dequantised layer, adapters on top, merge and its rounding, bad input.
#include <bit>
#include <cmath>
#include <filesystem>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include <peft/peft.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

/// The nearest bfloat16 to `x`, ties to the even significand, found by
/// comparing the two neighbours in double (no bit tricks).
std::uint16_t nearest_bf16(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  const auto down = static_cast<std::uint16_t>(bits >> 16);  // toward zero
  const auto up = static_cast<std::uint16_t>(down + 1);      // away from zero (may be inf)
  const double exact = x, below = bf16_to_float(down);
  // Past the largest bfloat16 the next step up would be ±2^128: a value
  // nearer to that than to the largest rounds to infinity (IEEE overflow).
  const double above = std::isinf(bf16_to_float(up)) ? std::copysign(0x1p128, exact) : bf16_to_float(up);
  const double to_down = std::abs(exact - below), to_up = std::abs(above - exact);
  if (to_down < to_up) return down;
  if (to_up < to_down) return up;
  return (down & 1u) == 0 ? down : up;
}

TEST(BFloat16, RoundsToNearestTiesToEven) {
  Rng rng(3);
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover every exponent; skip NaN and inf (checked below).
    const auto bits = static_cast<std::uint32_t>(rng.next());
    const float x = std::bit_cast<float>(bits);
    if (!std::isfinite(x)) continue;
    const std::uint16_t want = nearest_bf16(x);
    ASSERT_EQ(float_to_bf16(x), want) << "x = " << x << " (bits " << std::hex << bits << ")";
  }
  // Exact ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and goes to the even 1.
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(-1.0f - 0x1p-8f)), -1.0f);
}

TEST(BFloat16, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(bf16_to_float(float_to_bf16(inf)), inf);
  EXPECT_EQ(bf16_to_float(float_to_bf16(-inf)), -inf);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits in the dropped bits stays NaN (truncation would give inf).
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_EQ(std::signbit(bf16_to_float(float_to_bf16(std::bit_cast<float>(0xff800001u)))), true);
  EXPECT_EQ(bf16_to_float(float_to_bf16(std::numeric_limits<float>::max())), inf);  // past bf16's largest
  EXPECT_EQ(bf16_to_float(float_to_bf16(-0.0f)), 0.0f);
  EXPECT_TRUE(std::signbit(bf16_to_float(float_to_bf16(-0.0f))));
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {  // every bfloat16 survives the round trip
    const float x = bf16_to_float(static_cast<std::uint16_t>(bits));
    if (std::isnan(x)) continue;
    ASSERT_EQ(float_to_bf16(x), bits);
  }
}

/// What the products multiply: A itself, or A rounded to bfloat16 where the
/// layer's products round their inputs (the oneDNN path).
Matrix<double> as_multiplied(const Matrix<float>& A) {
  if (!LinearBF16::kRoundsActivations) return A.cast<double>();
  return A.unaryExpr([](float a) { return static_cast<double>(bf16_to_float(float_to_bf16(a))); });
}

/// ‖Y_bf16 − Y_f32‖ / ‖Y_f32‖ bound: W's rounding, and X's on the oneDNN path.
constexpr double kAggregate = LinearBF16::kRoundsActivations ? 6e-3 : 4e-3;

/// Shapes that split W into several panels with a ragged last one, both ways.
struct Shape {
  Index d_in, d_out, N;
};
const Shape kShapes[] = {{5000, 100, 7}, {3, 2, 1}, {64, 4000, 5}, {300, 200, 33}};

TEST(LinearBF16, ForwardAndBackwardAreTheDequantisedLayers) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << s.d_out << " x " << s.d_in << ", N = " << s.N);
    Rng rng(5);
    const auto f32 = Linear<float>::random(s.d_in, s.d_out, rng);
    const LinearBF16 layer(f32);
    const Linear<float> exact = layer.dequantised();
    const Matrix<float> X = random_matrix<float>(s.N, s.d_in, 1), dY = random_matrix<float>(s.N, s.d_out, 2);
    // Against the same weights in double: only float32 summation differs.
    const Matrix<double> W = exact.weight().cast<double>();
    const Matrix<double> Y_ref =
        (as_multiplied(X) * W.transpose()).rowwise() + exact.bias().cast<double>().transpose();
    EXPECT_LT(max_rel_diff(layer.forward(X), Y_ref), 1e-5);
    EXPECT_LT(max_rel_diff(layer.backward(dY), as_multiplied(dY) * W), 1e-5);
    // Against the float32 layer it was rounded from: W's rounding, at most
    // 2^-8 per weight, and in aggregate far less.
    const Matrix<float> Y32 = f32.forward(X), dX32 = f32.backward(dY);
    EXPECT_LT((layer.forward(X) - Y32).norm() / Y32.norm(), kAggregate);
    EXPECT_LT((layer.backward(dY) - dX32).norm() / dX32.norm(), kAggregate);
    EXPECT_LE(((exact.weight() - f32.weight()).array() / f32.weight().array()).abs().maxCoeff(), 0x1p-8);
    EXPECT_EQ(layer.weight_bytes(), static_cast<std::size_t>(2 * s.d_in * s.d_out));
    EXPECT_EQ(layer.flops(s.N), f32.flops(s.N));
  }
}

TEST(LinearBF16, BadInputIsRefused) {
  Rng rng(1);
  const LinearBF16 layer(Linear<float>::random(6, 4, rng));
  EXPECT_PEFT_ERROR(layer.forward(Matrix<float>(2, 5)), "LinearBF16::forward: X must have in_features = 6");
  EXPECT_PEFT_ERROR(layer.backward(Matrix<float>(2, 6)), "LinearBF16::backward: dY must have out_features = 4");
  EXPECT_PEFT_ERROR(LinearBF16(std::vector<std::uint16_t>(5), 2, 3), "bits must hold d_out x d_in = 6");
  EXPECT_PEFT_ERROR(LinearBF16(Matrix<float>(0, 3)), "weight must be non-empty");
  EXPECT_PEFT_ERROR(LinearBF16(Matrix<float>(2, 3), Vector<float>(3)), "bias must have 0 or d_out = 2");
  LinearBF16 writable = layer;
  EXPECT_PEFT_ERROR(writable.assign_rounded(Matrix<float>(6, 4)), "weight must be 4 x 6");
}

/// An adapter over a rounded base gives what it gives over the dequantised
/// float32 layer: outputs, input gradients and parameter gradients, up to
/// float32 (or, on LinearBF16's oneDNN path, X's and dY's rounding in the
/// base's products). `make` builds the same adapter twice (adapters may be move-only).
template <class Base, class Make>
void expect_same_as_dequantised(Make make, const std::string& what) {
  SCOPED_TRACE(what);
  using A = decltype(make());
  Rng rng(9);
  A first = make();
  const Index d_in = first.in_features(), d_out = first.out_features();
  const Base base(Linear<float>::random(d_in, d_out, rng));
  Adapted<A, Base> on_bf16(base, std::move(first));
  Adapted<A> on_f32(base.dequantised(), make());
  const Matrix<float> X = random_matrix<float>(9, d_in, 3), dY = random_matrix<float>(9, d_out, 4);
  bool rounds_activations = false;
  if constexpr (std::is_same_v<Base, LinearBF16>) rounds_activations = LinearBF16::kRoundsActivations;
  const double tolerance = rounds_activations ? 1e-2 : 1e-5;
  EXPECT_LT(max_rel_diff(on_bf16.forward(X), on_f32.forward(X)), tolerance);
  EXPECT_LT(max_rel_diff(on_bf16.backward(dY), on_f32.backward(dY)), tolerance);
  const auto g16 = on_bf16.parameters(), g32 = on_f32.parameters();
  ASSERT_EQ(g16.size(), g32.size());
  for (std::size_t i = 0; i < g16.size(); ++i)
    EXPECT_LT(max_rel_diff(g16[i].grad, g32[i].grad), tolerance) << g16[i].name;
}

template <class Base>
void expect_adapters_match_the_dequantised_layer() {
  expect_same_as_dequantised<Base>(
      [] {
        LoRA<float> lora(48, 40, {.r = 4, .alpha = 8});
        lora.parameters()[1].value = random_matrix<float>(40, 4, 5);  // B ≠ 0, so ΔX matters
        return lora;
      },
      "LoRA");
  expect_same_as_dequantised<Base>([] { return IA3<float>(48, 40); }, "IA3");
  expect_same_as_dequantised<Base>([] { return SURM<float>(48, 40, {.structure = Structure::Circulant}); },
                                   "SURM circulant");
  expect_same_as_dequantised<Base>([] { return RED<float>(48, 40); }, "RED");
  expect_same_as_dequantised<Base>([] { return C3A<float>(48, 48, {.block_size = 16}); }, "C3A");
}

TEST(LinearBF16, AdaptersOnTopMatchTheDequantisedLayer) { expect_adapters_match_the_dequantised_layer<LinearBF16>(); }

TEST(LinearBF16, MergeRoundsOnceAndReportsIt) {
  Rng rng(4);
  const LinearBF16 base(Linear<float>::random(64, 32, rng));
  LoRA<float> lora(64, 32, {.r = 4, .alpha = 8});
  lora.parameters()[1].value = random_matrix<float>(32, 4, 6);
  Adapted<LoRA<float>, LinearBF16> layer(base, lora);
  layer.set_training(false);
  const Matrix<float> X = random_matrix<float>(5, 64, 7);
  const Matrix<float> before = layer.forward(X);
  const Matrix<float> delta = layer.adapter().delta_weight();
  layer.merge();
  // W + ΔW rounded once: each merged weight is the bfloat16 nearest to it.
  const Matrix<float> sum = base.weight() + delta;
  const Matrix<float> merged = layer.base().weight();
  for (Index i = 0; i < sum.size(); ++i) ASSERT_EQ(merged.data()[i], bf16_to_float(nearest_bf16(sum.data()[i])));
  const RoundingError error = layer.rounding_error();
  EXPECT_GT(error.max_abs, 0);
  EXPECT_EQ(error.max_abs, (merged - sum).cwiseAbs().maxCoeff());
  EXPECT_LE(error.max_rel, 0x1p-8);
  EXPECT_LT((layer.forward(X) - before).norm() / before.norm(), kAggregate);
  // Unmerge subtracts ΔW and rounds again: W comes back up to the two
  // roundings, 2^-8 of |W + ΔW| and of |W| (plus float32 addition).
  layer.unmerge();
  const Matrix<float> restored = layer.base().weight(), original = base.weight();
  const auto bound = 0x1p-8 * (sum.array().abs() + original.array().abs()) * (1 + 1e-5);
  EXPECT_TRUE(((restored - original).array().abs() <= bound).all());
  EXPECT_GT((restored - original).cwiseAbs().maxCoeff(), 0);  // not exact: it is a rounded base
  EXPECT_LE(layer.rounding_error().max_rel, 0x1p-8);
}

TEST(LinearBF16, SafeMergeOfNonFiniteWeightsLeavesTheBase) {
  // W(0, 0) + ΔW(0, 0) overflows float32 (3e38 + 1e38), or is a finite float
  // (3.3895e38 + 1e36) past the midpoint between bfloat16's largest and 2^128,
  // so that only the rounding makes it inf.
  const float largest = bf16_to_float(0x7f7f);
  for (const auto& [w00, factor, rounding_only] : {std::tuple{3e38f, 1e19f, false}, {largest, 1e18f, true}}) {
    SCOPED_TRACE(w00);
    Rng rng(4);
    Matrix<float> w = Linear<float>::random(8, 4, rng).weight();
    w(0, 0) = w00;
    const LinearBF16 base(w);
    ASSERT_TRUE(base.all_finite());
    LoRA<float> lora(8, 4, {.r = 1, .alpha = 1});
    lora.parameters()[0].value.setConstant(factor);
    lora.parameters()[1].value.setConstant(factor);  // ΔW = factor² per entry
    const Matrix<float> sum = base.weight() + lora.delta_weight();
    ASSERT_EQ(std::isfinite(sum(0, 0)), rounding_only);
    Adapted<LoRA<float>, LinearBF16> layer(base, lora);
    EXPECT_PEFT_ERROR(layer.merge(true), "would hold NaN or Inf (safe_merge)");
    EXPECT_FALSE(layer.merged());
    EXPECT_EQ(layer.base().weight_bits(), base.weight_bits());
    EXPECT_EQ(layer.rounding_error().max_abs, 0);  // the refused attempt leaves no report
    // Without safe_merge the merge goes through; an overflow that only the
    // rounding made is reported as an infinite change.
    layer.merge();
    EXPECT_FALSE(layer.base().all_finite());
    EXPECT_EQ(std::isinf(layer.rounding_error().max_abs), rounding_only);
  }
}

TEST(LinearBF16, BehindAdaptedLayer) {
  Rng rng(6);
  IA3<float> ia3(8, 6);
  ia3.parameters()[0].value = random_matrix<float>(6, 1, 3);  // not the identity: merging changes W
  AdaptedLayer<float> layer(Adapted<IA3<float>, LinearBF16>(LinearBF16(Linear<float>::random(8, 6, rng)),
                                                            std::move(ia3)),
                            "IA3");
  EXPECT_EQ(layer.in_features(), 8);
  EXPECT_EQ(layer.out_features(), 6);
  ASSERT_NE(layer.base_as<LinearBF16>(), nullptr);
  EXPECT_EQ(layer.base_as<Linear<float>>(), nullptr);
  EXPECT_PEFT_ERROR(layer.base(), "AdaptedLayer::base: the IA3 layer's base is not a dense Linear<T>");
  EXPECT_NE((layer.get<IA3<float>, LinearBF16>()), nullptr);
  EXPECT_EQ(layer.get<IA3<float>>(), nullptr);
  const Matrix<float> X = random_matrix<float>(3, 8, 1);
  const Matrix<float> Y = layer.forward(X);
  layer.merge();
  EXPECT_LT((layer.forward(X) - Y).norm() / Y.norm(), kAggregate);
  EXPECT_GT(layer.rounding_error().max_abs, 0);
  EXPECT_EQ(layer.state().base, nullptr);  // not a dense Linear<float>
}

TEST(LinearBF16, AdapterOnItSavesInPeftFormat) {
  Rng rng(7);
  const LinearBF16 base(Linear<float>::random(12, 10, rng));
  LoRA<float> lora(12, 10, {.r = 2, .alpha = 4});
  lora.parameters()[1].value = random_matrix<float>(10, 2, 8);
  Adapted<LoRA<float>, LinearBF16> layer(base, std::move(lora));
  layer.set_base_bias_trainable(true);
  const auto dir = std::filesystem::temp_directory_path() / "peft_linear_bf16_save_test";
  std::filesystem::remove_all(dir);
  io::save_peft<float>(dir, {{"fc", layer}});
  const auto loaded = io::load_peft<float>(dir);
  std::filesystem::remove_all(dir);
  AdaptedLayer<float> back = loaded.wrap("fc", base.dequantised());
  const auto want = layer.parameters(), got = back.parameters();
  ASSERT_EQ(want.size(), got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name);
    EXPECT_EQ(got[i].value, want[i].value) << want[i].name;
  }
}

TEST(LinearBF16, BackendIsReported) {
  const GemmBackend backend = gemm_backend();
  EXPECT_EQ(backend.bf16.rfind(LinearBF16::kRoundsActivations ? "oneDNN " : "portable", 0), 0u) << backend.bf16;
}

TEST(LinearBF16, LoadsFromSafetensorsWithoutAFloatCopy) {
  Rng rng(8);
  const Linear<float> f32 = Linear<float>::random(12, 5, rng);
  const LinearBF16 rounded(f32);
  io::Tensor weight;
  weight.dtype = "BF16";
  weight.shape = {5, 12};
  weight.data.resize(2 * 60);
  std::memcpy(weight.data.data(), rounded.weight_bits().data(), weight.data.size());
  io::TensorMap tensors;
  tensors["fc.weight"] = weight;
  tensors["fc.bias"] = io::Tensor::from(f32.bias().transpose(), {5});
  tensors["fc32.weight"] = io::Tensor::from(f32.weight());
  tensors["flat"] = io::Tensor::from(f32.bias().transpose(), {5});
  const auto path = std::filesystem::temp_directory_path() / "peft_linear_bf16_test.safetensors";
  io::write_safetensors(path, tensors);
  const io::Safetensors file = io::read_safetensors(path);
  std::filesystem::remove(path);

  const LinearBF16 loaded = io::load_linear_bf16(file, "fc.weight", "fc.bias");
  EXPECT_EQ(loaded.weight_bits(), rounded.weight_bits());
  EXPECT_EQ(loaded.bias(), f32.bias());
  EXPECT_EQ(io::load_linear_bf16(file, "fc32.weight").weight_bits(), rounded.weight_bits());  // rounded on load
  EXPECT_FALSE(io::load_linear_bf16(file, "fc32.weight").has_bias());
  EXPECT_PEFT_ERROR(io::load_linear_bf16(file, "flat"), "load_linear_bf16: tensor 'flat' must be 2-D");
  EXPECT_PEFT_ERROR(io::load_linear_bf16(file, "fc.weight", "fc32.weight"), "must be 1-D with d_out = 5");
  EXPECT_PEFT_ERROR(io::load_linear_bf16(file, "missing"), "no tensor 'missing'");
}

TEST(LinearInt8, QuantisesEachRowWithinHalfAStep) {
  Rng rng(11);
  Matrix<float> w = Linear<float>::random(70, 30, rng).weight();
  w.row(3).setZero();      // an all-zero row: scale 0, levels 0
  w(5, 7) = 1e-3f;         // tiny next to the row's largest
  const LinearInt8 layer(w);
  const Matrix<float> deq = layer.weight();
  for (Index i = 0; i < w.rows(); ++i) {
    const double top = w.row(i).cwiseAbs().maxCoeff();
    EXPECT_FLOAT_EQ(layer.scales()(i), static_cast<float>(top / 127));
    for (Index j = 0; j < w.cols(); ++j) {
      const int q = layer.weight_int8()[static_cast<std::size_t>(i * w.cols() + j)];
      ASSERT_LE(std::abs(q), 127);
      ASSERT_EQ(deq(i, j), layer.scales()(i) * static_cast<float>(q));
      // The nearest level: within half a step.
      const double step = layer.scales()(i), err = std::abs(static_cast<double>(deq(i, j)) - w(i, j));
      ASSERT_LE(err, step / 2 * (1 + 1e-6) + 1e-30) << i << ", " << j;
    }
    if (top > 0) {
      EXPECT_EQ(deq.row(i).cwiseAbs().maxCoeff(), layer.scales()(i) * 127.0f);  // the row's largest is ±127
    }
  }
  EXPECT_TRUE(deq.row(3).isZero());
  EXPECT_EQ(layer.weight_bytes(), static_cast<std::size_t>(70 * 30 + 4 * 30));
}

TEST(LinearInt8, ForwardAndBackwardAreTheDequantisedLayers) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << s.d_out << " x " << s.d_in << ", N = " << s.N);
    Rng rng(5);
    const auto f32 = Linear<float>::random(s.d_in, s.d_out, rng);
    const LinearInt8 layer(f32);
    const Matrix<double> W = layer.weight().cast<double>();
    const Matrix<float> X = random_matrix<float>(s.N, s.d_in, 1), dY = random_matrix<float>(s.N, s.d_out, 2);
    const Matrix<double> Y_ref = (X.cast<double>() * W.transpose()).rowwise() + f32.bias().cast<double>().transpose();
    EXPECT_LT(max_rel_diff(layer.forward(X), Y_ref), 1e-5);
    EXPECT_LT(max_rel_diff(layer.backward(dY), dY.cast<double>() * W), 1e-5);
    // Against the float32 layer: each weight within max|W_i|/254 of its own.
    const Matrix<float> Y32 = f32.forward(X), dX32 = f32.backward(dY);
    EXPECT_LT((layer.forward(X) - Y32).norm() / Y32.norm(), 1e-2);
    EXPECT_LT((layer.backward(dY) - dX32).norm() / dX32.norm(), 1e-2);
  }
}

TEST(LinearInt8, AdaptersOnTopMatchTheDequantisedLayer) { expect_adapters_match_the_dequantised_layer<LinearInt8>(); }

TEST(LinearInt8, MergeQuantisesAgainAndReportsIt) {
  Rng rng(4);
  const LinearInt8 base(Linear<float>::random(64, 32, rng));
  LoRA<float> lora(64, 32, {.r = 4, .alpha = 8});
  lora.parameters()[1].value = random_matrix<float>(32, 4, 6);
  Adapted<LoRA<float>, LinearInt8> layer(base, lora);
  const Matrix<float> sum = base.weight() + layer.adapter().delta_weight();
  layer.merge();
  const LinearInt8 expected(sum);  // W + ΔW quantised from scratch
  EXPECT_EQ(layer.base().weight_int8(), expected.weight_int8());
  EXPECT_EQ(layer.base().scales(), expected.scales());
  const double half_step = layer.base().scales().maxCoeff() / 2;
  EXPECT_GT(layer.rounding_error().max_abs, 0);
  EXPECT_LE(layer.rounding_error().max_abs, half_step * (1 + 1e-6));
  EXPECT_NEAR(layer.rounding_error().max_abs, (layer.base().weight() - sum).cwiseAbs().maxCoeff(), 1e-7);
  layer.unmerge();
  EXPECT_FALSE(layer.merged());
  EXPECT_LT((layer.base().weight() - base.weight()).cwiseAbs().maxCoeff(), 2 * half_step);
}

TEST(LinearInt8, BadInputIsRefused) {
  Rng rng(1);
  LinearInt8 layer(Linear<float>::random(6, 4, rng));
  EXPECT_PEFT_ERROR(layer.forward(Matrix<float>(2, 5)), "LinearInt8::forward: X must have in_features = 6");
  EXPECT_PEFT_ERROR(layer.backward(Matrix<float>(2, 6)), "LinearInt8::backward: dY must have out_features = 4");
  EXPECT_PEFT_ERROR(LinearInt8(Matrix<float>(0, 3)), "weight must be non-empty");
  EXPECT_PEFT_ERROR(LinearInt8(Matrix<float>::Zero(2, 3), Vector<float>(3)), "bias must have 0 or d_out = 2");
  EXPECT_PEFT_ERROR(layer.assign_rounded(Matrix<float>(6, 4)), "weight must be 4 x 6");
  const auto before = layer.weight_int8();
  Matrix<float> bad = layer.weight();
  bad(1, 2) = std::numeric_limits<float>::infinity();
  EXPECT_PEFT_ERROR(layer.assign_rounded(bad), "weight holds NaN or Inf");
  EXPECT_EQ(layer.weight_int8(), before);  // unchanged
  // A merge whose sum overflows float32 is refused and leaves the base as it was.
  LoRA<float> lora(6, 4, {.r = 1, .alpha = 1});
  lora.parameters()[0].value.setConstant(1e20f);
  lora.parameters()[1].value.setConstant(1e20f);  // ΔW = 1e40: inf in float32
  Adapted<LoRA<float>, LinearInt8> adapted(layer, lora);
  EXPECT_PEFT_ERROR(adapted.merge(), "NaN or Inf");
  EXPECT_FALSE(adapted.merged());
  EXPECT_EQ(adapted.base().weight_int8(), before);
}

}  // namespace
}  // namespace peft::test
