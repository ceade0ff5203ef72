#pragma once
// IEEE binary16 (F16) and bfloat16 (BF16) to float, bit-exact, without
// relying on compiler support for _Float16 or __bf16.

#include <bit>
#include <cstdint>

#include <peft/core/bfloat16.hpp>

namespace peft::io {

using ::peft::bf16_to_float;  // bfloat16 is the top half of a binary32 (core/bfloat16.hpp)

/// IEEE binary16 to float, exactly: subnormals, infinities and NaN payloads included.
inline float f16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = std::uint32_t{bits & 0x8000u} << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f)  // inf or NaN: keep the payload
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0)  // normal: rebias 15 -> 127
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal: value = mantissa * 2^-24; normalise it for binary32.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  mantissa &= 0x3ffu;
  return std::bit_cast<float>(sign | static_cast<std::uint32_t>(113 - shift) << 23 | (mantissa << 13));
}

}  // namespace peft::io
