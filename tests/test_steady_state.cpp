// No allocation in the steady state: once a layer has run forward + backward
// at a shape, further training steps at that shape allocate nothing — every
// adapter, float and double, square and rectangular, each FFT path (powers of
// two, mixed radix, odd and Bluestein sizes), with dropout on.
//
// Two counters: heap allocations Eigen makes (EIGEN_RUNTIME_NO_MALLOC turns
// them into a failed eigen_assert, counted below) and calls of the global
// operator new (std::vector and friends). Eigen's GEMM takes heap workspace
// of its own for large products, which no caller can avoid, so each layer is
// compared with its frozen base run the same way: the adapter must add none.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace {
long g_eigen_allocations = 0;
long g_new_calls = 0;
bool g_counting = false;

/// Eigen's asserts in this file: a forbidden heap allocation is counted, any
/// other failed assertion aborts as an assert would.
void eigen_assertion_failed(const char* condition, const char* file, int line) {
  if (std::strstr(condition, "heap allocation is forbidden") != nullptr) {
    ++g_eigen_allocations;
    return;
  }
  std::fprintf(stderr, "%s:%d: Eigen assertion failed: %s\n", file, line, condition);
  std::abort();
}
}  // namespace

#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) \
  do {                  \
    if (!(x)) eigen_assertion_failed(#x, __FILE__, __LINE__); \
  } while (false)

#include <peft/peft.hpp>

#include "test_util.hpp"

// The replaceable global allocation functions, counting while armed. Kept
// out of line: inlined into a delete-expression, free() after new would trip
// GCC's -Wmismatched-new-delete.
[[gnu::noinline]] void* operator new(std::size_t size) {
  if (g_counting) ++g_new_calls;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t size, std::align_val_t alignment) {
  if (g_counting) ++g_new_calls;
  const auto a = static_cast<std::size_t>(alignment);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace peft::test {
namespace {

struct Allocations {
  long eigen = 0, operator_new = 0;
};

/// What `step` allocates, run twice after one warm-up call.
template <class Step>
Allocations count_steady_state(Step&& step) {
  step();
  g_eigen_allocations = g_new_calls = 0;
  Eigen::internal::set_is_malloc_allowed(false);
  g_counting = true;
  step();
  step();
  g_counting = false;
  Eigen::internal::set_is_malloc_allowed(true);
  return {g_eigen_allocations, g_new_calls};
}

/// One training step (forward + backward into kept outputs) of a layer around
/// `adapter` allocates no more than the same step of its frozen base.
template <class A>
void expect_no_steady_state_allocation(A adapter, Index N, const std::string& what) {
  using T = typename A::Scalar;
  SCOPED_TRACE(what + ", N = " + std::to_string(N));
  Rng rng(7);
  const Index d_in = adapter.in_features(), d_out = adapter.out_features();  // before the move below
  Adapted<A> layer(Linear<T>::random(d_in, d_out, rng), std::move(adapter));
  const Matrix<T> X = random_matrix<T>(N, layer.in_features(), 1);
  const Matrix<T> dY = random_matrix<T>(N, layer.out_features(), 2);
  Matrix<T> Y, dX;
  const Allocations base = count_steady_state([&] {
    layer.base().forward(X, Y);
    layer.base().backward(dY, dX);
  });
  const Allocations adapted = count_steady_state([&] {
    layer.forward(X, Y);
    layer.backward(dY, dX);
  });
  EXPECT_EQ(adapted.eigen, base.eigen) << "Eigen heap allocations per two steps (the base alone makes " << base.eigen
                                       << ")";
  EXPECT_EQ(adapted.operator_new, base.operator_new) << "operator new calls per two steps";
}

template <class T>
void check_structured(Index d_in, Index d_out, Index N) {
  const std::string shape = std::to_string(d_in) + " -> " + std::to_string(d_out);
  for (const auto& [structure, name] : {std::pair{Structure::Circulant, "circulant"},
                                        {Structure::CirculantSingle, "circulant (one vector)"},
                                        {Structure::SymToeplitz, "symmetric Toeplitz"},
                                        {Structure::Toeplitz, "Toeplitz"},
                                        {Structure::LDR, "LDR rho=2"}})
    expect_no_steady_state_allocation(SURM<T>(d_in, d_out, {.structure = structure, .rank = 2}),
                                      N, std::string("SURM ") + name + " " + shape);
  if (d_in % 4 == 0 && d_out % 4 == 0)
    expect_no_steady_state_allocation(SURM<T>(d_in, d_out, {.structure = Structure::Kronecker, .rank = 4}), N,
                                      "SURM Kronecker " + shape);
}

template <class T>
void check_all(Index d, Index N) {
  const std::string size = std::to_string(d);
  expect_no_steady_state_allocation(LoRA<T>(d, d, {.r = 4, .alpha = 8, .init = LoRAInit::None}), N, "LoRA " + size);
  expect_no_steady_state_allocation(
      LoRA<T>(d, d, {.r = 4, .alpha = 8, .rslora = true, .dropout = 0.2, .init = LoRAInit::None, .lora_bias = true}), N,
      "LoRA with dropout, rsLoRA and lora_bias " + size);
  if (d % 4 == 0) {
    expect_no_steady_state_allocation(MELoRA<T>(d, d, {.r = 4, .n = 2, .dropout = 0.2, .init = LoRAInit::None}), N,
                                      "MELoRA " + size);
    expect_no_steady_state_allocation(LoKr<T>(d, d, {.r = 4, .init = LoKrInit::Random}), N, "LoKr " + size);
    expect_no_steady_state_allocation(
        LoKr<T>(d, d, {.r = 1, .decompose_both = true, .rank_dropout = 0.3, .init = LoKrInit::Random}), N,
        "LoKr decomposed, rank dropout " + size);
    auto factors =
        std::make_shared<LoRTAFactors<T>>(LoRTAConfig{.r = 4, .d = d, .heads = 4, .layers = 2, .dropout = 0.2});
    expect_no_steady_state_allocation(LoRTA<T>(factors, 1, 2), N, "LoRTA " + size);
    expect_no_steady_state_allocation(C3A<T>(d, d, {.block_size = d / 4}), N, "C3A " + size);
  }
  check_structured<T>(d, d, N);
  for (const auto structure : {Structure::Circulant, Structure::Toeplitz})
    expect_no_steady_state_allocation(SURMAdapter<T>(d, d, {.structure = structure, .dropout = 0.2}), N,
                                      "SURM adapter " + size);
  expect_no_steady_state_allocation(Houlsby<T>(d, d, {.bottleneck = 8}), N, "Houlsby " + size);
  expect_no_steady_state_allocation(RED<T>(d, d), N, "RED " + size);
  expect_no_steady_state_allocation(IA3<T>(d, d), N, "IA3 " + size);
  expect_no_steady_state_allocation(IA3<T>(d, d, {.feedforward = true}), N, "IA3 feed-forward " + size);
}

TEST(SteadyState, EveryAdapterFloat) {
  check_all<float>(64, 16);  // powers of two: the engine's panels
  check_all<float>(60, 33);  // mixed radix, a ragged last panel
  check_all<float>(63, 5);   // odd: the row paths
}

TEST(SteadyState, EveryAdapterDouble) {
  check_all<double>(64, 17);
  check_all<double>(60, 3);
}

TEST(SteadyState, RectangularStructures) {
  check_structured<float>(48, 64, 16);
  check_structured<float>(64, 40, 5);
  check_structured<double>(40, 64, 9);
}

TEST(SteadyState, LongTransforms) {
  check_structured<float>(1000, 1000, 20);  // Bluestein
  check_structured<float>(768, 768, 4);     // radix 3
  check_structured<float>(1024, 1024, 4);   // padded panels (fft::detail::PanelLayout)
  expect_no_steady_state_allocation(C3A<float>(768, 768, {.block_size = 64}), 4, "C3A 768");
}

/// A rounded base (bfloat16, int8) allocates no more than the float32 layer
/// it computes: its panel buffer is allocated once per thread, at the first step.
template <class Base>
void expect_rounded_base_allocates_like_linear() {
  // Eigen's GEMM puts its packed blocks on the stack or the heap by their
  // size, which it derives from the host's caches: with a 48 KiB L1 (one
  // machine here) the float32 layer's blocks fit the stack where a panel's do
  // not. Zen 4's sizes (32 KiB, 1 MiB, 32 MiB) make the counts host-independent.
  const std::ptrdiff_t l1 = Eigen::l1CacheSize(), l2 = Eigen::l2CacheSize(), l3 = Eigen::l3CacheSize();
  Eigen::setCpuCacheSizes(32 << 10, 1 << 20, 32 << 20);
  struct RestoreCaches {
    std::ptrdiff_t l1, l2, l3;
    ~RestoreCaches() { Eigen::setCpuCacheSizes(l1, l2, l3); }
  } restore{l1, l2, l3};
  for (const auto& [d_in, d_out] : {std::pair<Index, Index>{5000, 100}, {64, 4000}}) {
    SCOPED_TRACE(std::to_string(d_out) + " x " + std::to_string(d_in));
    Rng rng(3);
    const Base layer(Linear<float>::random(d_in, d_out, rng));
    const Linear<float> f32 = layer.dequantised();
    const Matrix<float> X = random_matrix<float>(6, d_in, 1), dY = random_matrix<float>(6, d_out, 2);
    Matrix<float> Y, dX;
    const Allocations dense = count_steady_state([&] {
      f32.forward(X, Y);
      f32.backward(dY, dX);
    });
    const Allocations rounded = count_steady_state([&] {
      layer.forward(X, Y);
      layer.backward(dY, dX);
    });
    EXPECT_EQ(rounded.eigen, dense.eigen);
    EXPECT_EQ(rounded.operator_new, dense.operator_new);
  }
}

TEST(SteadyState, BFloat16Base) { expect_rounded_base_allocates_like_linear<LinearBF16>(); }
TEST(SteadyState, Int8Base) { expect_rounded_base_allocates_like_linear<LinearInt8>(); }

/// The counters count: an allocation inside the armed window is seen.
// Several adapters on one layer: an active set of three kinds, and a mixed
// batch with rows interleaved (gathered) and sorted (used in place).
TEST(SteadyState, MultiAdaptedActiveSetsAndMixedBatches) {
  const Index d = 32, N = 24;
  Rng rng(7);
  MultiAdapted<float> layer(Linear<float>::random(d, d, rng));
  layer.add_adapter("lora", LoRA<float>(d, d, {.r = 4, .alpha = 8, .dropout = 0.2, .init = LoRAInit::None}));
  layer.add_adapter("circulant", SURM<float>(d, d, {.structure = Structure::Circulant}));
  layer.add_adapter("red", RED<float>(d, d));
  layer.add_adapter("ff", IA3<float>(d, d, {.feedforward = true}));
  layer.add_adapter("c3a", C3A<float>(d, d, {.block_size = 8}));
  const Matrix<float> X = random_matrix<float>(N, d, 1), dY = random_matrix<float>(N, d, 2);
  Matrix<float> Y, dX;
  std::vector<int> interleaved(static_cast<std::size_t>(N)), sorted(interleaved.size());
  for (Index i = 0; i < N; ++i) {
    interleaved[static_cast<std::size_t>(i)] = static_cast<int>(i % 6) - 1;  // -1 (base) and all five
    sorted[static_cast<std::size_t>(i)] = static_cast<int>(i * 5 / N);
  }
  const Allocations base = count_steady_state([&] {
    layer.base().forward(X, Y);
    layer.base().backward(dY, dX);
  });
  layer.set_adapter({"ff", "lora", "circulant", "red"});
  for (const auto& pass : std::vector<std::pair<std::string, std::function<void()>>>{
           {"active set", [&] { layer.forward(X, Y); }},
           {"interleaved rows", [&] { layer.forward(X, interleaved, Y); }},
           {"sorted rows", [&] { layer.forward(X, sorted, Y); }}}) {
    SCOPED_TRACE(pass.first);
    const std::function<void()>& step = pass.second;  // not a structured binding: clang 14 cannot capture those
    const Allocations multi = count_steady_state([&] {
      step();
      layer.backward(dY, dX);
    });
    EXPECT_EQ(multi.eigen, base.eigen) << "Eigen heap allocations per two steps";
    EXPECT_EQ(multi.operator_new, base.operator_new) << "operator new calls per two steps";
  }
}

TEST(SteadyState, CountersSeeAllocations) {
  const Allocations seen = count_steady_state([] {
    Matrix<float> m(3, 3);
    m.setZero();
    auto v = std::make_unique<int>(1);
    EXPECT_EQ(m.sum() + static_cast<float>(*v), 1.0f);
  });
  EXPECT_EQ(seen.eigen, 2);
  EXPECT_EQ(seen.operator_new, 2);
}

}  // namespace
}  // namespace peft::test
