#pragma once
// Which library runs the dense products (the frozen layer's X·Wᵀ and dY·W,
// LoRA's thin GEMMs, ...): Eigen's own GEMM by default, or OpenBLAS when the
// program is built against target peft::blas (CMake option
// PEFT_WITH_OPENBLAS), which defines EIGEN_USE_BLAS for every file that links
// it, so Eigen hands its float/double products to OpenBLAS's sgemm/dgemm.
//
// OpenBLAS chooses its kernels at load time from the CPU, unless the
// environment forces a core with OPENBLAS_CORETYPE; a forced core older than
// the CPU (Haswell's AVX2 kernels on an AVX-512 CPU) runs its GEMM well below
// what the CPU can do. gemm_backend() reports the core and says so.

#include <peft/core/intrinsics.hpp>

#include <Eigen/Core>

#include <cstdlib>
#include <string>
#include <string_view>

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
  std::string name;     ///< "Eigen" or "OpenBLAS"
  std::string details;  ///< OpenBLAS: its build configuration and the core it runs; Eigen: its SIMD
  int threads = 1;      ///< the threads its GEMM uses
  std::string warning;  ///< empty, or why this backend runs below what the CPU offers
};

namespace detail {

/// SIMD level of an x86 instruction set family: 0 SSE, 1 AVX, 2 AVX2, 3 AVX-512.
inline int simd_level_of_core(std::string_view core) {
  for (std::string_view k : {"SkylakeX", "Cooperlake", "SapphireRapids"})
    if (core.find(k) != std::string_view::npos) return 3;
  for (std::string_view k : {"Haswell", "Zen"})
    if (core.find(k) != std::string_view::npos) return 2;
  if (core.find("Sandybridge") != std::string_view::npos) return 1;
  return 0;
}

/// The same level for the CPU this runs on (x86 with GCC or Clang; else -1: unknown).
inline int simd_level_of_cpu() {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 3;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
  if (__builtin_cpu_supports("avx")) return 1;
  return 0;
#else
  return -1;
#endif
}

/// Empty when OpenBLAS's `core` uses what the CPU offers; else why it does not,
/// naming OPENBLAS_CORETYPE when the environment forces it (`forced`, may be null).
inline std::string blas_core_warning(std::string_view core, int cpu_level, const char* forced) {
  static constexpr const char* kLevels[] = {"SSE", "AVX", "AVX2", "AVX-512"};
  const int core_level = simd_level_of_core(core);
  if (cpu_level < 0 || core_level >= cpu_level) return {};
  std::string w = "OpenBLAS runs its " + std::string(core) + " kernels (" + kLevels[core_level] +
                  ") on a CPU with " + kLevels[cpu_level] + ": its GEMM is slower than this CPU allows";
  if (forced != nullptr && *forced != '\0')
    w += "; the environment sets OPENBLAS_CORETYPE=" + std::string(forced) +
         ", unset it (and OPENBLAS_L2_SIZE) to let OpenBLAS choose";
  return w;
}

}  // namespace detail

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
#else
  b.name = "Eigen";
  b.details = std::string("Eigen ") + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
              "." + std::to_string(EIGEN_MINOR_VERSION) + ", SIMD " + Eigen::SimdInstructionSetsInUse();
  b.threads = Eigen::nbThreads();
#endif
  return b;
}

/// Sets the threads of the dense products: Eigen's (with OpenMP), and OpenBLAS's
/// when it is the backend. The FFT engine follows Eigen's count.
inline void set_gemm_threads(int threads) {
  Eigen::setNbThreads(threads);
#if defined(PEFT_WITH_OPENBLAS)
  openblas_set_num_threads(threads);
#endif
}

}  // namespace peft
