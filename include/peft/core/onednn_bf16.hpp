#pragma once
// bfloat16 products through oneDNN's matmul, for LinearBF16 when built with
// PEFT_WITH_ONEDNN (CMake target peft::onednn, Debian's libdnnl-dev):
// C (M x N, float32) = A (M x K, float32 rounded to bfloat16) · B, with B the
// layer's bfloat16 weight read in place, as Wᵀ (forward) or W (input gradient).
// oneDNN runs these on the CPU's bfloat16 dot-product instructions
// (avx512_bf16) with float32 accumulation, about twice the float32 GEMM's rate.
//
// Primitives and their memory objects are built once per shape and thread and
// reused; each call only points them at the current buffers.

#if !defined(PEFT_WITH_ONEDNN)
#error "peft/core/onednn_bf16.hpp needs PEFT_WITH_ONEDNN (link peft::onednn)"
#endif

#include <cstdint>
#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include <peft/core/bfloat16.hpp>
#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

// matmul::desc is oneDNN 2.x's API (Debian bookworm's libdnnl-dev 2.6/2.7); 3.x replaced it.
static_assert(DNNL_VERSION_MAJOR == 2, "peft::onednn needs oneDNN 2.x");

namespace peft::detail::onednn {

/// The CPU engine and this thread's stream.
inline dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}
inline dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

/// One matmul shape, built once: the primitive, its three memory objects and
/// the argument map execute() takes (the memories are handles, so pointing
/// them at new buffers updates the map too).
struct Bf16Matmul {
  dnnl::matmul primitive;
  dnnl::memory src, weights, dst;
  std::unordered_map<int, dnnl::memory> args;

  /// C (M x N) = A (M x K) · B (K x N); B is stored transposed (N x K row-major) when `b_transposed`.
  Bf16Matmul(Index M, Index K, Index N, bool b_transposed) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc a({M, K}, dt::bf16, tag::ab), b({K, N}, dt::bf16, b_transposed ? tag::ba : tag::ab),
        c({M, N}, dt::f32, tag::ab);
    primitive = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), cpu_engine()));
    src = dnnl::memory(a, cpu_engine(), DNNL_MEMORY_NONE);
    weights = dnnl::memory(b, cpu_engine(), DNNL_MEMORY_NONE);
    dst = dnnl::memory(c, cpu_engine(), DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
  }
};

/// This thread's matmul for a shape. At most kCachedShapes are kept per
/// thread (a training loop uses a handful; varying batch sizes must not grow
/// the cache without bound): past that the cache starts over.
inline constexpr std::size_t kCachedShapes = 32;
inline Bf16Matmul& matmul_for(Index M, Index K, Index N, bool b_transposed) {
  thread_local std::map<std::tuple<Index, Index, Index, bool>, Bf16Matmul> cache;
  const auto key = std::make_tuple(M, K, N, b_transposed);
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (cache.size() >= kCachedShapes) cache.clear();
    it = cache.emplace(key, Bf16Matmul(M, K, N, b_transposed)).first;
  }
  return it->second;
}

/// A (float32, any row stride) rounded to bfloat16 into this thread's buffer.
inline const std::uint16_t* rounded(const ConstMatrixRef<float>& A) {
  thread_local std::vector<std::uint16_t> buffer;
  const auto size = static_cast<std::size_t>(A.rows() * A.cols());
  if (buffer.size() < size) buffer.resize(size);
  std::uint16_t* out = buffer.data();
  for (Index i = 0; i < A.rows(); ++i) {
    const float* row = A.row(i).data();
    for (Index j = 0; j < A.cols(); ++j) *out++ = float_to_bf16(row[j]);
  }
  return buffer.data();
}

/// C = round_bf16(A) · op(B): B holds K x N bfloat16 values, or N x K when
/// `b_transposed` (a d_out x d_in weight used as Wᵀ). C is M x N, contiguous.
inline void bf16_matmul(const ConstMatrixRef<float>& A, const std::uint16_t* B, Index N, bool b_transposed,
                        Matrix<float>& C) {
  const Index M = A.rows(), K = A.cols();
  C.resize(M, N);
  if (M == 0) return;
  try {
    Bf16Matmul& mm = matmul_for(M, K, N, b_transposed);
    mm.src.set_data_handle(const_cast<std::uint16_t*>(rounded(A)));
    mm.weights.set_data_handle(const_cast<std::uint16_t*>(B));  // read only: the matmul's weights
    mm.dst.set_data_handle(C.data());
    mm.primitive.execute(thread_stream(), mm.args);
    thread_stream().wait();
  } catch (const dnnl::error& e) {
    ::peft::detail::raise("LinearBF16: oneDNN's bfloat16 matmul (", M, " x ", K, " by ", K, " x ", N,
                          ") failed: ", e.what(), "; expected a CPU oneDNN supports bfloat16 on (AVX-512), or "
                          "build without PEFT_WITH_ONEDNN for the portable path");
  }
}

}  // namespace peft::detail::onednn
