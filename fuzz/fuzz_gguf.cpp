// libFuzzer target: parse_gguf on arbitrary bytes. Malformed input must end
// in peft::Error; a crash, a sanitizer report, another exception or an
// allocation the file's size cannot justify is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <peft/io/gguf.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto g = peft::io::parse_gguf(std::vector<unsigned char>(data, data + size), "fuzz");
    for (const auto& t : g.tensors)  // conversions must stay inside the data section
      if (t.bytes != 0 && t.shape.size() <= 2) (void)g.to_matrix<double>(t);
    for (const auto& e : g.metadata)
      (void)e.value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const peft::Error&) {
  }
  return 0;
}
