#pragma once
// Products through oneDNN's matmul when built with PEFT_WITH_ONEDNN (CMake
// target peft::onednn, Debian's libdnnl-dev), for the frozen layers:
// - float32: Linear<float>'s Y = X·Wᵀ + b and dX = dY·W, read in place
//   (X and dY with any row stride); oneDNN's AVX-512 kernels reach ~90% of the
//   CPU's FMA peak here, against ~65% for Eigen's GEMM (docs/performance.md).
// - bfloat16: LinearBF16's products, A (float32) rounded to bfloat16 times the
//   layer's bfloat16 weight read in place, on the CPU's bfloat16 dot-product
//   instructions (avx512_bf16) with float32 accumulation.
//
// Primitives and their memory objects are built once per shape, thread and
// OpenMP thread count (oneDNN fixes a primitive's threads when it builds it)
// and reused; each call only points them at the current buffers.

#if !defined(PEFT_WITH_ONEDNN)
#error "peft/core/onednn_matmul.hpp needs PEFT_WITH_ONEDNN (link peft::onednn)"
#endif

#include <cstdint>
#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <omp.h>
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

/// What a matmul primitive is built for: C (M x N, float32, contiguous) =
/// A (M x K, row stride lda) · B (K x N, or N x K stored when b_transposed)
/// [+ bias (N)], A and B both float32 or both bfloat16, run on `threads`
/// OpenMP threads (set_gemm_threads; oneDNN sizes a primitive's work for the
/// count it is built with).
struct MatmulShape {
  Index M, K, N, lda;
  bool b_transposed, bfloat16, bias;
  int threads = omp_get_max_threads();
  auto key() const { return std::make_tuple(M, K, N, lda, b_transposed, bfloat16, bias, threads); }
  bool operator<(const MatmulShape& o) const { return key() < o.key(); }
};

/// One matmul shape, built once: the primitive, its memory objects and the
/// argument map execute() takes (the memories are handles, so pointing them
/// at new buffers updates the map too).
struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory src, weights, dst, bias;
  std::unordered_map<int, dnnl::memory> args;

  explicit Matmul(const MatmulShape& s) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt in = s.bfloat16 ? dt::bf16 : dt::f32;
    const dnnl::memory::desc a({s.M, s.K}, in, dnnl::memory::dims{s.lda, 1}),
        b({s.K, s.N}, in, s.b_transposed ? tag::ba : tag::ab), c({s.M, s.N}, dt::f32, tag::ab),
        bias_desc({1, s.N}, dt::f32, tag::ab);
    const auto desc = s.bias ? dnnl::matmul::desc(a, b, bias_desc, c) : dnnl::matmul::desc(a, b, c);
    primitive = dnnl::matmul(dnnl::matmul::primitive_desc(desc, cpu_engine()));
    src = dnnl::memory(a, cpu_engine(), DNNL_MEMORY_NONE);
    weights = dnnl::memory(b, cpu_engine(), DNNL_MEMORY_NONE);
    dst = dnnl::memory(c, cpu_engine(), DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
    if (s.bias) {
      bias = dnnl::memory(bias_desc, cpu_engine(), DNNL_MEMORY_NONE);
      args.emplace(DNNL_ARG_BIAS, bias);
    }
  }
};

/// This thread's matmul for a shape. At most kCachedShapes are kept per
/// thread (a training loop uses a handful; varying batch sizes must not grow
/// the cache without bound): past that the cache starts over.
inline constexpr std::size_t kCachedShapes = 32;
inline Matmul& matmul_for(const MatmulShape& shape) {
  thread_local std::map<MatmulShape, Matmul> cache;
  auto it = cache.find(shape);
  if (it == cache.end()) {
    if (cache.size() >= kCachedShapes) cache.clear();
    it = cache.emplace(shape, Matmul(shape)).first;
  }
  return it->second;
}

/// Runs the matmul for `shape` on these buffers (read only except C), turning
/// oneDNN's errors into peft::Error naming `who`.
inline void execute(const char* who, const MatmulShape& shape, const void* A, const void* B, const float* bias,
                    float* C) {
  try {
    Matmul& mm = matmul_for(shape);
    mm.src.set_data_handle(const_cast<void*>(A));  // oneDNN's handles are non-const; these are only read
    mm.weights.set_data_handle(const_cast<void*>(B));
    if (shape.bias) mm.bias.set_data_handle(const_cast<float*>(bias));
    mm.dst.set_data_handle(C);
    mm.primitive.execute(thread_stream(), mm.args);
    thread_stream().wait();
  } catch (const dnnl::error& e) {
    ::peft::detail::raise(who, ": oneDNN's ", shape.bfloat16 ? "bfloat16" : "float32", " matmul (", shape.M, " x ",
                          shape.K, " by ", shape.K, " x ", shape.N, ") failed: ", e.what(),
                          "; expected a CPU oneDNN supports", shape.bfloat16 ? " bfloat16 on (AVX-512)" : "",
                          ", or build without PEFT_WITH_ONEDNN");
  }
}

/// C = A · op(B) [+ bias] in float32: B holds K x N values, or N x K when
/// `b_transposed` (a d_out x d_in weight used as Wᵀ); `bias` has N entries or
/// is null. C is resized to M x N, contiguous.
inline void f32_matmul(const char* who, const ConstMatrixRef<float>& A, const float* B, Index N, bool b_transposed,
                       const float* bias, Matrix<float>& C) {
  const Index M = A.rows(), K = A.cols();
  C.resize(M, N);
  if (M == 0) return;
  const MatmulShape shape{M, K, N, M == 1 ? K : A.outerStride(), b_transposed, false, bias != nullptr};
  execute(who, shape, A.data(), B, bias, C.data());
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
/// `b_transposed`. C is resized to M x N, contiguous.
inline void bf16_matmul(const ConstMatrixRef<float>& A, const std::uint16_t* B, Index N, bool b_transposed,
                        Matrix<float>& C) {
  const Index M = A.rows(), K = A.cols();
  C.resize(M, N);
  if (M == 0) return;
  const MatmulShape shape{M, K, N, K, b_transposed, true, false};
  execute("LinearBF16", shape, rounded(A), B, nullptr, C.data());
}

}  // namespace peft::detail::onednn
