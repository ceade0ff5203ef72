// libFuzzer target: adapter_config.json parsing. Malformed input must end in
// peft::Error; a config that parses must survive to_json -> parse unchanged.
// (Module names are not matched against fuzzed regexes here: a hostile regex
// can backtrack exponentially in any backtracking engine, PEFT's included.)
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <peft/io/peft_config.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  peft::io::PeftConfig config;
  try {
    config = peft::io::PeftConfig::parse(text, "fuzz");
  } catch (const peft::Error&) {
    return 0;
  }
  const auto json = config.to_json();
  const auto again = peft::io::PeftConfig::parse(json.dump(), "fuzz-roundtrip");
  if (again.to_json() != json) __builtin_trap();
  return 0;
}
