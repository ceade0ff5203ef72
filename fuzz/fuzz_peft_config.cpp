// libFuzzer target: adapter_config.json parsing and module matching.
// Malformed input must end in peft::Error; a config that parses must survive
// to_json -> parse unchanged, and its patterns must match module names (short,
// dotted and long ones) without a crash: ModulePattern is linear in the name,
// so hostile patterns such as "(a|a)*b" cost no more than any other.
#include <cstddef>
#include <cstdint>
#include <string>
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

  const std::string names[] = {"", "fc1", "model.layers.0.self_attn.q_proj", "model.vision_tower.mlp.down_proj",
                               std::string(2000, 'a'), "x." + std::string(2000, 'm') + ".v_proj", std::string(text)};
  for (const std::string& name : names) {
    try {
      (void)config.targets(name);
      (void)config.is_feedforward(name);
      (void)config.rank_for(name);
      (void)config.alpha_for(name);
      (void)config.block_size_for(name);
    } catch (const peft::Error&) {
      // A pattern key composed into PEFT's "(.*\.)?(key)$" can still be refused.
    }
  }
  return 0;
}
