#pragma once
// Which library runs the dense products (the frozen layer's X·Wᵀ and dY·W,
// LoRA's thin GEMMs, ...): Eigen's own GEMM by default, or OpenBLAS when the
// program is built against target peft::blas (CMake option
// PEFT_WITH_OPENBLAS), which defines EIGEN_USE_BLAS for every file that links
// it, so Eigen hands its float/double products to OpenBLAS's sgemm/dgemm.
//
// OpenBLAS chooses its kernels at load time from the CPU, unless the
// environment forces a core with OPENBLAS_CORETYPE; a forced core older than
// the CPU (Haswell's AVX2 kernels on an AVX-512 CPU) can run its GEMM well below
// what the CPU can do (not always: docs/performance.md). gemm_backend()
// reports the core and says so.
//
// With target peft::onednn (PEFT_WITH_ONEDNN) the frozen layers' own products
// run on oneDNN's matmul instead: Linear<float>'s in float32, LinearBF16's in
// bfloat16 (core/onednn_matmul.hpp); the adapters' products stay on the
// backend above.

#include <peft/core/error.hpp>
#include <peft/core/intrinsics.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#if defined(PEFT_WITH_ONEDNN)
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#endif

#if defined(PEFT_WITH_OPENBLAS)
extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}
#endif

namespace peft {

/// The dense-product backend of this build, as gemm_backend() describes it.
struct GemmBackend {
  std::string name;     ///< "Eigen", "OpenBLAS", or "BLAS" (EIGEN_USE_BLAS defined by the user, not peft::blas)
  std::string details;  ///< OpenBLAS: its build configuration and the core it runs; Eigen: its SIMD
  int threads = 1;      ///< the threads its GEMM uses
  std::string warning;  ///< empty, or why this backend runs below what the CPU offers
  /// Linear<float>'s products (the frozen layer): oneDNN's float32 matmul
  /// (with peft::onednn) or the backend named above.
  std::string linear;
  /// LinearBF16's products: oneDNN's bfloat16 matmul (with peft::onednn) or
  /// the portable float32 GEMM on widened panels.
  std::string bf16;
};

namespace detail {

/// SIMD level of an OpenBLAS core name (DYNAMIC_ARCH builds say "SkylakeX",
/// single-core builds "SKYLAKEX"): 0 SSE, 1 AVX, 2 AVX2, 3 AVX-512, -1 unknown.
inline int simd_level_of_core(std::string_view core) {
  std::string name(core);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  static constexpr std::pair<const char*, int> kCores[] = {
      {"skylakex", 3},   {"cooperlake", 3},  {"sapphirerapids", 3},                                     // AVX-512
      {"haswell", 2},    {"zen", 2},         {"excavator", 2},                                          // AVX2
      {"sandybridge", 1}, {"bulldozer", 1},  {"piledriver", 1},     {"steamroller", 1},                 // AVX
      {"prescott", 0},   {"core2", 0},       {"penryn", 0},         {"dunnington", 0}, {"nehalem", 0},  // SSE
      {"atom", 0},       {"barcelona", 0},   {"opteron", 0},        {"nano", 0},       {"katmai", 0}};
  for (const auto& [key, level] : kCores)
    if (name.find(key) != std::string::npos) return level;
  return -1;
}

/// The same level for the CPU this runs on (x86 with GCC or Clang; else -1: unknown).
inline int simd_level_of_cpu() {
#if defined(__has_builtin)
#define PEFT_HAS_CPU_SUPPORTS __has_builtin(__builtin_cpu_supports)
#else
#define PEFT_HAS_CPU_SUPPORTS 0
#endif
#if PEFT_HAS_CPU_SUPPORTS && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 3;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
  if (__builtin_cpu_supports("avx")) return 1;
  return 0;
#else
  return -1;
#endif
#undef PEFT_HAS_CPU_SUPPORTS
}

/// Empty when OpenBLAS's `core` uses what the CPU offers; else why it does not,
/// naming OPENBLAS_CORETYPE when the environment forces it (`forced`, may be null).
inline std::string blas_core_warning(std::string_view core, int cpu_level, const char* forced) {
  static constexpr const char* kLevels[] = {"SSE", "AVX", "AVX2", "AVX-512"};
  const int core_level = simd_level_of_core(core);
  if (cpu_level < 0 || core_level < 0 || core_level >= cpu_level) return {};  // unknown: nothing to say
  std::string w = "OpenBLAS runs its " + std::string(core) + " kernels (" + kLevels[core_level] +
                  ") on a CPU with " + kLevels[cpu_level] + ": its GEMM may be slower than this CPU allows";
  if (forced != nullptr && *forced != '\0')
    w += "; the environment sets OPENBLAS_CORETYPE=" + std::string(forced) +
         ", unset it (and OPENBLAS_L2_SIZE) to let OpenBLAS choose";
  return w;
}

}  // namespace detail

// The two versions of gemm_backend() and set_gemm_threads() live in different
// inline namespaces, so a program mixing files built with and without
// peft::blas keeps both (one inline function may not have two bodies).
#if defined(PEFT_WITH_OPENBLAS)
inline namespace gemm_openblas {
#elif defined(EIGEN_USE_BLAS)
inline namespace gemm_other_blas {
#else
inline namespace gemm_eigen {
#endif
// ... and within each, with or without oneDNN (the frozen layers' products).
#if defined(PEFT_WITH_ONEDNN)
inline namespace frozen_onednn {
#else
inline namespace frozen_portable {
#endif

/// The backend this translation unit's products run on, its threads, and a
/// warning when it cannot use the CPU's widest SIMD (OpenBLAS with a forced
/// older core, see the file comment).
inline GemmBackend gemm_backend() {
  GemmBackend b;
#if defined(PEFT_WITH_OPENBLAS)
  b.name = "OpenBLAS";
  const std::string core = openblas_get_corename();
  b.details = std::string(openblas_get_config()) + ", core " + core;
  b.threads = openblas_get_num_threads();
  b.warning = detail::blas_core_warning(core, detail::simd_level_of_cpu(), std::getenv("OPENBLAS_CORETYPE"));
#elif defined(EIGEN_USE_BLAS)
  b.name = "BLAS";
  b.details = "EIGEN_USE_BLAS with a BLAS other than peft::blas's OpenBLAS: its core and threads are not known here";
  b.threads = Eigen::nbThreads();
#else
  b.name = "Eigen";
  b.details = std::string("Eigen ") + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
              "." + std::to_string(EIGEN_MINOR_VERSION) + ", SIMD " + Eigen::SimdInstructionSetsInUse();
  b.threads = Eigen::nbThreads();
#endif
#if defined(PEFT_WITH_ONEDNN)
  const dnnl_version_t* v = dnnl_version();
  const std::string onednn = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                             std::to_string(v->patch);
  const std::string threads = ", " + std::to_string(omp_get_max_threads()) + " thread(s)";
  b.linear = onednn + " f32 matmul" + threads;
  b.bf16 = onednn + " bf16 matmul" + threads;
#else
  b.linear = b.name + " (the backend above)";
  b.bf16 = "portable: float32 GEMM on widened panels";
#endif
  return b;
}

/// Sets the threads of the dense products: Eigen's (with OpenMP), OpenBLAS's
/// when it is the backend, and oneDNN's (the frozen layers') with peft::onednn. The
/// FFT engine follows Eigen's count. Throws
/// peft::Error for threads < 1 (Eigen and OpenBLAS would read it differently).
inline void set_gemm_threads(int threads) {
  PEFT_REQUIRE(threads >= 1, "set_gemm_threads: expected threads >= 1, got ", threads);
  Eigen::setNbThreads(threads);
#if defined(PEFT_WITH_OPENBLAS)
  openblas_set_num_threads(threads);
#endif
#if defined(PEFT_WITH_ONEDNN)
  omp_set_num_threads(threads);  // oneDNN's (OpenMP runtime), for the frozen layers
#endif
}

}  // inline namespace frozen_onednn / frozen_portable
}  // inline namespace gemm_openblas / gemm_other_blas / gemm_eigen

}  // namespace peft
