// libFuzzer target: parse_safetensors on arbitrary bytes. Malformed input
// must end in peft::Error; anything else (a crash, a sanitizer report, another
// exception, an allocation the file's size cannot justify) is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include <peft/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto st = peft::io::parse_safetensors(std::span<const unsigned char>(data, size), "fuzz");
    for (const auto& [name, tensor] : st) {
      // Conversions of every float dtype must stay in bounds.
      if (tensor.dtype == "F32" || tensor.dtype == "F64" || tensor.dtype == "F16" || tensor.dtype == "BF16") {
        const auto v = tensor.to_vector<double>();
        if (v.size() != tensor.numel()) __builtin_trap();
      }
    }
  } catch (const peft::Error&) {
  }
  return 0;
}
