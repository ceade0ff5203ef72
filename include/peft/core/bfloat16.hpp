#pragma once
// bfloat16 <-> float, bit-exact, without relying on compiler support for __bf16.
// bfloat16 is the top 16 bits of a binary32: same exponent range, 8 bits of
// significand (relative rounding error at most 2^-8 = 0.39% for normal
// numbers; subnormals keep fewer bits).

#include <bit>
#include <cstdint>

namespace peft {

/// The float a bfloat16 bit pattern stands for (exact: every bfloat16 is a float).
inline float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(std::uint32_t{bits} << 16); }

/// The nearest bfloat16, ties to even (as PyTorch's `.to(torch.bfloat16)`):
/// values past the largest bfloat16 round to ±inf, NaN stays NaN (made quiet).
inline std::uint16_t float_to_bf16(float value) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u)  // NaN: truncating could leave an all-zero payload (inf)
    return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round half to even on the dropped 16 bits
  return static_cast<std::uint16_t>(bits >> 16);
}

}  // namespace peft
