// ModulePattern: the regexes of adapter_config.json, matched as Python's `re`
// matches them in PEFT. Expected results below were produced by CPython 3.11's
// re.fullmatch / re.match on the same strings; tests/module_pattern_vs_python.py
// compares thousands of random patterns live when python3 is present.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <peft/peft.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

using io::ModulePattern;

struct Case {
  const char* pattern;
  const char* name;
  bool full_match;
  bool match;
};

TEST(ModulePattern, AgreesWithPythonRe) {
  const Case cases[] = {
      {".*\\.(q|v)_proj", "model.layers.3.v_proj", true, true},
      {".*\\.(q|v)_proj", "model.layers.3.v_proj.inner", false, true},
      {".*\\.(q|v)_proj", "v_proj", false, false},
      {"^(?!.*vision).*(q_proj|v_proj)", "model.language_model.layers.0.self_attn.q_proj", true, true},
      {"^(?!.*vision).*(q_proj|v_proj)", "model.vision_tower.layers.0.self_attn.q_proj", false, false},
      {".*(?<!lm_head)", "lm_head", false, true},
      {".*(?<!lm_)head", "model.lm_head", false, false},
      {".*(?<!lm_)head", "model.cls_head", true, true},
      {"model\\.layers\\.\\d+\\.mlp\\.(up|down)_proj", "model.layers.12.mlp.down_proj", true, true},
      {"model\\.layers\\.\\d+\\.mlp\\.(up|down)_proj", "model.layers.x.mlp.down_proj", false, false},
      {"layers\\.[0-3]\\.", "layers.2.attn", false, true},
      {"[^.]+", "fc1", true, true},
      {"[^.]+", "a.fc1", false, true},
      {"fc{1,2}1", "fcc1", true, true},
      {"fc{1,2}1", "fccc1", false, false},
      {"fc{,2}1", "f1", true, true},
      {"a{2}", "aa", true, true},
      {"a{", "a{", true, true},
      {"a{1,x}", "a{1,x}", true, true},
      {"\\bq_proj", "q_proj", true, true},
      {".*\\bq_proj", "attn.q_proj", true, true},
      {".*\\bq_proj", "attnq_proj", false, false},
      {".*\\Bq_proj", "attnq_proj", true, true},
      {"(?P<mod>q|k)_proj", "k_proj", true, true},
      {"(?:a|b)+?c", "ababc", true, true},
      {"q_proj$", "q_proj\n", false, true},
      {"q_proj\\Z", "q_proj\n", false, false},
      {"(?=.*attn).*proj", "layer.attn.o_proj", true, true},
      {"(?=.*attn).*proj", "layer.mlp.o_proj", false, false},
      {"[\\w.]+", "model.layers.0", true, true},
      {"[\\w.]+", "model layers", false, true},
      {"\\x41\\t", "A\t", true, true},
      {"[a\\-z]", "-", true, true},
      {"[]a]", "]", true, true},
      {"(?#comment)fc1", "fc1", true, true},
      {"", "", true, true},
      {"", "x", false, true},
      {"a|", "", true, true},
  };
  for (const Case& c : cases) {
    const ModulePattern p(c.pattern);
    EXPECT_EQ(p.full_match(c.name), c.full_match) << "re.fullmatch('" << c.pattern << "', '" << c.name << "')";
    EXPECT_EQ(p.match(c.name), c.match) << "re.match('" << c.pattern << "', '" << c.name << "')";
  }
}

// Patterns that take exponential time in backtracking engines (CPython's re
// included) and names long enough to overflow std::regex's recursive executor.
TEST(ModulePattern, SuperLinearPatternsAndLongNamesRunInLinearTime) {
  const std::string long_a(50000, 'a');
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(ModulePattern(".*").full_match(long_a));
  EXPECT_TRUE(ModulePattern("(.*)*").full_match(long_a));
  EXPECT_FALSE(ModulePattern("(a|a)*b").full_match(long_a + "c"));
  EXPECT_FALSE(ModulePattern("(a*)*b").full_match(long_a));
  EXPECT_FALSE(ModulePattern("(?:a+)+$x").match(long_a));
  EXPECT_TRUE(ModulePattern("(?:a|aa)*(?<=a)").full_match(long_a));
  EXPECT_TRUE(ModulePattern("^(?!.*vision)(?:.*\\.)?(?=[a-z_.]+$)a+").full_match("x." + long_a));
  EXPECT_FALSE(ModulePattern("(?:a{100}){100}b").full_match(long_a));
  // Not a timing test: a backtracking engine would need longer than the age of
  // the universe here; minutes would mean the linear bound broke.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::minutes(2));
}

TEST(ModulePattern, RefusesWhatItCannotMatchWithTheReason) {
  EXPECT_PEFT_ERROR(ModulePattern("a\\1", "cfg"), "cfg: 'a\\1' is not a supported regular expression "
                                                  "(back-references are not supported, at position 1)");
  EXPECT_PEFT_ERROR(ModulePattern("(?i)q_proj"), "inline flags");
  EXPECT_PEFT_ERROR(ModulePattern("(?>a)"), "atomic groups");
  EXPECT_PEFT_ERROR(ModulePattern("a*+"), "possessive repeats are not supported");
  EXPECT_PEFT_ERROR(ModulePattern("a**"), "multiple repeat at position 2");
  EXPECT_PEFT_ERROR(ModulePattern("*a"), "nothing to repeat at position 0");
  EXPECT_PEFT_ERROR(ModulePattern("^*"), "nothing to repeat at position 1");
  EXPECT_PEFT_ERROR(ModulePattern("a{3,2}"), "min repeat greater than max repeat");
  EXPECT_PEFT_ERROR(ModulePattern("(a"), "missing ), unterminated subpattern at position 0");
  EXPECT_PEFT_ERROR(ModulePattern("a)"), "unbalanced parenthesis at position 1");
  EXPECT_PEFT_ERROR(ModulePattern("[a-"), "unterminated character set");
  EXPECT_PEFT_ERROR(ModulePattern("[z-a]"), "bad character range");
  EXPECT_PEFT_ERROR(ModulePattern("\\q"), "bad escape \\q");
  EXPECT_PEFT_ERROR(ModulePattern("a\\"), "bad escape (end of pattern)");
  // Python repeats a group of anchors and an empty group; only bare anchors are refused.
  EXPECT_TRUE(ModulePattern("(?:^)*a").full_match("a"));
  EXPECT_TRUE(ModulePattern("(?:)*a").full_match("a"));
}

TEST(ModulePattern, BoundsNestingProgramSizeAndLookarounds) {
  const std::string deep = std::string(ModulePattern::max_nesting + 1, '(') + "a" +
                           std::string(ModulePattern::max_nesting + 1, ')');
  EXPECT_PEFT_ERROR(ModulePattern{deep}, "groups nested deeper than 100");
  const std::string ok = std::string(ModulePattern::max_nesting, '(') + "a" +
                         std::string(ModulePattern::max_nesting, ')');
  EXPECT_TRUE(ModulePattern(ok).full_match("a"));
  EXPECT_PEFT_ERROR(ModulePattern("(?:(?:a{1000}){1000}){1000}"), "more than 20000 NFA instructions");
  EXPECT_PEFT_ERROR(ModulePattern("a{99999999999999999999}"), "repeat count above 20000 at position 2");
  EXPECT_EQ(ModulePattern("a{19999}").program_size(), 20000u);
  EXPECT_PEFT_ERROR(ModulePattern("a{20000}"), "more than 20000 NFA instructions");
  // Zero-width bodies repeated many times compile to nothing, quickly.
  EXPECT_TRUE(ModulePattern("(?:(?:a{0}){20000}){20000}b").full_match("b"));
  std::string looks;
  for (std::size_t k = 0; k <= ModulePattern::max_lookarounds; ++k) looks += "(?=a)";
  EXPECT_PEFT_ERROR(ModulePattern{looks}, "more than 32 lookarounds");
  // A long pattern is quoted cut short in the message.
  try {
    ModulePattern(std::string(5000, 'a') + ")");
    ADD_FAILURE() << "expected peft::Error";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u) << e.what();
  }
}

TEST(ModulePattern, PeftConfigRefusesBadPatternsAtLoadNamingTheField) {
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": "a{3,2}"})", "cfg"),
                    "field 'target_modules'");
  EXPECT_PEFT_ERROR(
      io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ["q"], "rank_pattern": {"(q": 2}})", "cfg"),
      "field 'rank_pattern'");
  const std::string digits(20, '9');
  EXPECT_PEFT_ERROR(
      io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": "a{)" + digits + R"(}"})", "cfg"),
      "repeat count above 20000");
}

// The crafted directory of issue #26: target_modules ".*" and one module name
// of 50,000 characters crashed load_peft (stack overflow in std::regex).
TEST(ModulePattern, CraftedDirectoryWithAHugeModuleNameLoads) {
  const auto dir = std::filesystem::temp_directory_path() / "peft_module_pattern_crafted";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string module(50000, 'm');
  std::ofstream(dir / "adapter_config.json")
      << R"({"peft_type": "LORA", "target_modules": ".*", "exclude_modules": "(x|x)*y", "r": 2, "lora_alpha": 4,
             "rank_pattern": {"(m|m)*n": 1}})";
  Rng rng(5);
  io::TensorMap tensors;
  tensors.emplace("base_model.model." + module + ".lora_A.weight",
                  io::Tensor::from(random_matrix<float>(2, 3, rng.next())));
  tensors.emplace("base_model.model." + module + ".lora_B.weight",
                  io::Tensor::from(random_matrix<float>(4, 2, rng.next())));
  io::write_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  const auto adapters = io::load_peft<float>(dir);
  ASSERT_EQ(adapters.modules(), std::vector<std::string>{module});
  auto layer = adapters.wrap(module, Linear<float>::random(3, 4, rng));
  EXPECT_EQ(layer.num_params(), 2 * 3 + 4 * 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace peft::test
