// SURM: structured ΔW (circulant, symmetric Toeplitz, Toeplitz, LDR), square
// and rectangular, against the dense ΔW and finite differences.
#include <peft/adapters/surm.hpp>

#include "adapter_checks.hpp"

namespace peft::test {
namespace {

static_assert(Adapter<SURM<float>> && Mergeable<SURM<double>>);

const Structure kStructures[] = {Structure::Circulant, Structure::CirculantSingle, Structure::SymToeplitz,
                                 Structure::Toeplitz, Structure::Kronecker, Structure::LDR};
// Kronecker r = 2 needs even sizes; every other structure takes any.
const std::pair<Index, Index> kShapes[] = {{16, 16}, {48, 64}, {64, 40}, {8, 6}};

template <class T>
void randomise(SURM<T>& surm) {
  std::uint64_t seed = 100;
  for (auto& p : surm.parameters()) p.value = random_matrix<T>(p.value.rows(), p.value.cols(), ++seed);
}

Index expected_params(Structure s, Index d_in, Index d_out, Index rank) {
  const Index n = std::max(d_in, d_out);
  switch (s) {
    case Structure::Circulant: return 2 * n;
    case Structure::CirculantSingle: return n;
    case Structure::SymToeplitz: return 2 * n;
    case Structure::Toeplitz: return d_in + d_out - 1;
    case Structure::Kronecker: return d_in + d_out;
    case Structure::LDR: return 2 * rank * n;
  }
  return -1;
}

template <class T>
class SURMTest : public ::testing::Test {};
TYPED_TEST_SUITE(SURMTest, Precisions);

TYPED_TEST(SURMTest, ForwardMatchesDenseDeltaAndMerges) {
  using T = TypeParam;
  for (const Structure s : kStructures)
    for (const auto& [d_in, d_out] : kShapes) {
      const SURMConfig config{.structure = s, .rank = 2, .alpha = 0.7};
      auto fresh = wrap(SURM<T>(d_in, d_out, config));
      expect_identity_at_init(fresh, 3);
      EXPECT_EQ(fresh.adapter().num_params(), expected_params(s, d_in, d_out, 2));
      auto layer = wrap(SURM<T>(d_in, d_out, config));
      randomise(layer.adapter());
      expect_forward_matches_delta_weight(layer, 5);
      expect_merge_round_trip(layer, 5);
    }
}

TEST(SURM, DeltaWeightIsTheStructuredMatrix) {
  SURM<double> circ(6, 6, {.structure = Structure::Circulant, .alpha = 2});
  randomise(circ);
  const Vector<double> g = (circ.parameters()[0].value.array() * circ.parameters()[1].value.array()).matrix().transpose();
  EXPECT_LT(max_rel_diff(circ.delta_weight(), (2.0 * structured::circulant_dense<double>(g)).eval()), 1e-14);
  SURM<double> toep(4, 3, {.structure = Structure::Toeplitz});
  randomise(toep);
  const auto t = toep.parameters()[0].value;
  const Matrix<double> dW = toep.delta_weight();
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 4; ++j) EXPECT_EQ(dW(i, j), t(0, i - j + 3));
  SURM<double> sym(5, 5, {.structure = Structure::SymToeplitz});
  randomise(sym);
  const auto a = sym.parameters()[0].value, b = sym.parameters()[1].value;
  Matrix<double> Ta(5, 5), Tb(5, 5);
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 5; ++j) {
      Ta(i, j) = a(0, std::abs(i - j));
      Tb(i, j) = b(0, std::abs(i - j));
    }
  EXPECT_LT(max_rel_diff(sym.delta_weight(), (Tb * Ta).eval()), 1e-14);
  SURM<double> kron(6, 4, {.structure = Structure::Kronecker, .rank = 2, .alpha = 3});
  randomise(kron);
  const Matrix<double> A = kron.parameters()[0].value, B = kron.parameters()[1].value;  // 2 x 3, 2 x 2
  Matrix<double> expected(4, 6);
  for (Index i = 0; i < 4; ++i)
    for (Index j = 0; j < 6; ++j) expected(i, j) = 1.5 * B(i / 2, j / 3) * A(i % 2, j % 3);
  EXPECT_LT(max_rel_diff(kron.delta_weight(), expected), 1e-14);
}

TEST(SURM, GradientsMatchFiniteDifferences) {
  for (const Structure s : kStructures)
    for (const auto& [d_in, d_out] : kShapes) {
      auto layer = wrap(SURM<double>(d_in, d_out, {.structure = s, .rank = 2, .alpha = 0.7}));
      randomise(layer.adapter());
      expect_gradients_match(layer, 3);
    }
}

TEST(SURM, RejectsBadInput) {
  EXPECT_PEFT_ERROR(SURM<double>(8, 8, {.structure = Structure::LDR, .rank = 0}),
                    "SURM: LDR displacement rank must be in [1, n] = [1, 8], got 0");
  EXPECT_PEFT_ERROR(SURM<double>(8, 8, {.alpha = 0}), "SURM: alpha must be a finite value > 0, got 0");
  EXPECT_PEFT_ERROR(SURM<double>(8, 6, {.structure = Structure::Kronecker, .rank = 4}),
                    "SURM: Kronecker r must divide d_in = 8 and d_out = 6, got 4");
  // r = 1 (all a prime size allows) or r = d_in = d_out: one outer product, refused.
  EXPECT_PEFT_ERROR(SURM<double>(7, 7, {.structure = Structure::Kronecker, .rank = 1}),
                    "SURM: Kronecker r = 1 over 7 -> 7 makes ΔW = B ⊗ A a rank-1 outer product");
  EXPECT_PEFT_ERROR(SURM<double>(8, 8, {.structure = Structure::Kronecker, .rank = 8}), "rank-1 outer product");
  EXPECT_NO_THROW(SURM<double>(4, 8, {.structure = Structure::Kronecker, .rank = 4}));  // B is 2 x 4: rank 2
  EXPECT_PEFT_ERROR(SURM<double>(0, 8, {}), "SURM: d_in and d_out must be positive");
  SURM<double> surm(8, 6, {});
  Matrix<double> Y(2, 6), dX(2, 8);
  EXPECT_PEFT_ERROR(surm.forward_delta(Matrix<double>::Zero(2, 7), Y), "SURM::forward_delta: expected X with d_in = 8");
  EXPECT_PEFT_ERROR(surm.backward_delta(Matrix<double>::Zero(2, 6), dX), "SURM::backward_delta: dY must be -1 x 6");
}

}  // namespace
}  // namespace peft::test
