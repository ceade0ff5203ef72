#pragma once
// Lane vectors for the batched FFT engine: one SIMD vector holds the same
// element of L different rows, so every butterfly runs on L rows at once.
// L = (vector width × a small unroll) / sizeof(T), fixed at compile time from
// the target: 64 bytes where AVX/AVX-512 exist (one AVX-512 register, or two
// AVX ones), 32 bytes otherwise (two SSE2 registers; the compiler splits the
// vectors into whatever the target has, down to scalar code).
// Lane vectors only ever travel by reference: passing them by value would
// change the calling convention between targets (GCC's -Wpsabi).

namespace peft::fft::detail {

#if defined(__AVX__) || defined(__AVX512F__)
inline constexpr int kLaneBytes = 64;
#else
inline constexpr int kLaneBytes = 32;
#endif

template <class T>
struct Lanes {
  static constexpr int count = kLaneBytes / static_cast<int>(sizeof(T));
  typedef T type __attribute__((vector_size(kLaneBytes)));
};

/// One complex element of L rows: the real parts and the imaginary parts.
template <class T>
struct LaneComplex {
  using V = typename Lanes<T>::type;
  V re, im;
};

}  // namespace peft::fft::detail
