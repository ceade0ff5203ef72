// Hugging Face PEFT adapter directories: PEFT's goldens through load_peft +
// wrap, save/load round trips for every type, PEFT's module-matching rules,
// and malformed directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include <peft/peft.hpp>

#include "golden_case.hpp"
#include "test_util.hpp"

namespace peft::test {
namespace {

namespace fs = std::filesystem;

/// A fresh, empty directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("peft_dir_test_" + std::string(info->test_suite_name()) + "_" +
                                         std::string(info->name()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::trunc) << text;
}

std::string golden_dir(const std::string& name) { return kGoldenDir + "/peft/" + name; }

// ---------------------------------------------------------------------------
// PEFT's goldens, loaded as a user would.

template <class T>
void check_golden(const std::string& name, double tol) {
  GoldenCase golden(name);
  const auto adapters = io::load_peft<T>(golden_dir(name));
  EXPECT_EQ(adapters.modules(), (std::vector<std::string>{"fc1", "fc2"}));
  auto fc1 = adapters.wrap("fc1", golden.base<T>("fc1"));
  auto fc2 = adapters.wrap("fc2", golden.base<T>("fc2"));
  const std::string type = adapters.config().peft_type;
  // PEFT's in-memory names carry the adapter name: lora_A.default.weight, ia3_l.default.
  golden.check(fc1, fc2, tol, [&](const std::string&, std::string_view p) {
    const std::string file_name = io::detail::peft_tensor_name(type, p);
    return file_name.ends_with(".weight") ? std::string(p) + ".default.weight" : file_name + ".default";
  });
}

TEST(PeftDir, LoRAGoldenThroughLoadPeft) { check_golden<double>("lora_f64", 1e-10); }
TEST(PeftDir, IA3GoldenThroughLoadPeft) { check_golden<double>("ia3_f64", 1e-10); }
TEST(PeftDir, LoKrGoldenThroughLoadPeft) { check_golden<double>("lokr_f64", 1e-10); }
TEST(PeftDir, C3AGoldenThroughLoadPeft) { check_golden<float>("c3a_f32", 2e-5); }

TEST(PeftDir, ConfigFieldsOfTheGoldens) {
  const auto lora = io::load_peft<double>(golden_dir("lora_f64")).config();
  EXPECT_EQ(lora.peft_type, "LORA");
  EXPECT_EQ(lora.r, 8);
  EXPECT_EQ(lora.lora_alpha, 16.0);
  EXPECT_FALSE(lora.use_rslora);
  EXPECT_EQ(lora.target_modules, (std::vector<std::string>{"fc2", "fc1"}));
  EXPECT_EQ(lora.bias, "none");
  const auto ia3 = io::load_peft<double>(golden_dir("ia3_f64")).config();
  EXPECT_EQ(ia3.feedforward_modules, (std::vector<std::string>{"fc2"}));
  EXPECT_TRUE(ia3.is_feedforward("fc2"));
  EXPECT_FALSE(ia3.is_feedforward("fc1"));
  EXPECT_EQ(io::load_peft<float>(golden_dir("c3a_f32")).config().block_size, 8);
  const auto lokr = io::load_peft<double>(golden_dir("lokr_f64")).config();
  EXPECT_EQ(lokr.r, 4);
  EXPECT_EQ(lokr.alpha, 8.0);
}

TEST(PeftDir, ResavingALoadedDirectoryKeepsEveryTensorByte) {
  for (const std::string name : {"lora_f64", "ia3_f64", "lokr_f64", "c3a_f32"}) {
    TempDir tmp;
    const auto loaded = io::load_peft<double>(golden_dir(name));
    io::save_peft(tmp.path(), loaded);
    const auto original = io::read_safetensors(golden_dir(name) + "/adapter_model.safetensors");
    const auto again = io::read_safetensors(tmp / "adapter_model.safetensors");
    ASSERT_EQ(again.size(), original.size()) << name;
    for (const auto& [key, tensor] : original) {
      EXPECT_EQ(again.at(key).dtype, tensor.dtype) << name << " " << key;
      EXPECT_EQ(again.at(key).shape, tensor.shape) << name << " " << key;
      EXPECT_EQ(again.at(key).data, tensor.data) << name << " " << key;
    }
    EXPECT_EQ(again.metadata(), original.metadata());
    const auto reloaded = io::load_peft<double>(tmp.path());
    EXPECT_EQ(reloaded.config().to_json(), loaded.config().to_json()) << name;
    // Unknown-to-us fields PEFT wrote survive.
    EXPECT_EQ(reloaded.config().raw.at("auto_mapping"), loaded.config().raw.at("auto_mapping"));
  }
}

// ---------------------------------------------------------------------------
// Save -> load round trips for every type, F64 and F32.

struct RoundTripCase {
  std::string label;
  io::PeftConfig config;
  Index d_in, d_out;
};

io::PeftConfig config_of(std::string type) {
  io::PeftConfig c;
  c.peft_type = std::move(type);
  return c;
}

std::vector<RoundTripCase> round_trip_cases() {
  std::vector<RoundTripCase> cases;
  auto lora = config_of("LORA");
  lora.r = 4;
  lora.lora_alpha = 12;
  lora.rank_pattern = {{"fc2", 2}};
  lora.alpha_pattern = {{"fc2", 3.0}};
  lora.lora_bias = true;
  lora.bias = "lora_only";
  cases.push_back({"lora", lora, 24, 16});
  auto rslora = config_of("LORA");
  rslora.r = 4;
  rslora.use_rslora = true;
  cases.push_back({"rslora", rslora, 16, 24});
  auto ia3 = config_of("IA3");
  ia3.feedforward_modules = {"fc2"};
  cases.push_back({"ia3", ia3, 16, 16});
  auto c3a = config_of("C3A");
  c3a.block_size = 8;
  cases.push_back({"c3a", c3a, 24, 16});
  auto lokr = config_of("LOKR");
  lokr.r = 2;
  lokr.alpha = 4;
  lokr.decompose_both = true;
  cases.push_back({"lokr", lokr, 24, 16});
  for (const auto s : {Structure::Circulant, Structure::CirculantSingle, Structure::SymToeplitz, Structure::Toeplitz,
                       Structure::Kronecker, Structure::LDR}) {
    auto surm = config_of("SURM");
    surm.structure = s;
    surm.rank = 2;
    surm.alpha = 0.5;
    cases.push_back({"surm_" + std::string(io::detail::enum_name(io::detail::kStructureNames, s)), surm, 24, 16});
  }
  auto surm_adapter = config_of("SURM_ADAPTER");
  surm_adapter.structure = Structure::Toeplitz;
  surm_adapter.activation = Activation::ReLU;
  cases.push_back({"surm_adapter", surm_adapter, 16, 16});
  auto red = config_of("RED");
  red.train_scale = false;
  cases.push_back({"red", red, 16, 12});
  auto melora = config_of("MELORA");
  melora.r = 2;
  melora.num_minis = 4;
  melora.lora_alpha = 4;
  cases.push_back({"melora", melora, 24, 16});
  return cases;
}

/// Every parameter random, so nothing round-trips by being zero.
template <class T>
void randomise(AdaptedLayer<T>& layer, Rng& rng) {
  for (auto& p : layer.parameters()) init::normal(p.value, 0.5, rng);
  for (auto& p : layer.parameters())
    if (p.name == "ia3_l" || p.name == "red_scale") p.value.array() += T(1);
}

template <class T>
void round_trip(const RoundTripCase& c, const std::string& dtype, double tol) {
  SCOPED_TRACE(c.label + " " + dtype);
  TempDir tmp;
  Rng rng(7);
  const std::vector<std::string> names{"model.fc1", "model.fc2"};
  std::vector<AdaptedLayer<T>> layers;
  auto config = c.config;
  config.target_modules = {"fc1", "fc2"};
  for (const auto& name : names) {
    auto layer = io::detail::make_layer<T>(config, name, Linear<T>::random(c.d_in, c.d_out, rng), nullptr);
    if (config.bias != "none") layer.set_base_bias_trainable(true);  // as PEFT trains it, and as wrap() loads it
    randomise(layer, rng);
    layers.push_back(std::move(layer));
  }
  io::save_peft<T>(tmp.path(), config, {{names[0], layers[0]}, {names[1], layers[1]}}, {.dtype = dtype});

  const auto loaded = io::load_peft<T>(tmp.path());
  EXPECT_EQ(loaded.modules(), names);
  EXPECT_EQ(loaded.config().to_json(), io::load_peft<T>(tmp.path()).config().to_json());
  EXPECT_EQ(loaded.config().peft_type, c.config.peft_type);
  const Matrix<T> X = random_matrix<T>(5, c.d_in, rng.next());
  for (std::size_t i = 0; i < names.size(); ++i) {
    Linear<T> base(layers[i].base().weight(), Vector<T>::Zero(c.d_out));  // bias comes from the file when saved
    if (config.bias == "none") base.bias() = layers[i].base().bias();
    auto again = loaded.wrap(names[i], std::move(base));
    auto want = layers[i].parameters();
    auto got = again.parameters();
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
      EXPECT_EQ(got[k].name, want[k].name);
      EXPECT_LT(max_rel_diff(got[k].value, want[k].value), tol) << want[k].name;
    }
    EXPECT_LT(max_rel_diff(again.forward(X), layers[i].forward(X)), tol);
  }
}

TEST(PeftDir, SaveThenLoadEveryTypeInF64) {
  for (const auto& c : round_trip_cases()) round_trip<double>(c, "F64", 1e-15);
}

TEST(PeftDir, SaveThenLoadEveryTypeInF32) {
  for (const auto& c : round_trip_cases()) round_trip<float>(c, "F32", 1e-6);
  // A float64 trainer saving PEFT's default float32 files.
  for (const auto& c : round_trip_cases()) round_trip<double>(c, "F32", 1e-6);
}

TEST(PeftDir, LoRTASharesOneFactorSetAcrossModules) {
  TempDir tmp;
  Rng rng(3);
  auto factors = std::make_shared<LoRTAFactors<double>>(
      LoRTAConfig{.r = 3, .alpha = 6, .d = 16, .heads = 2, .layers = 2, .matrix_types = 2, .seed = 5});
  for (auto& p : factors->parameters()) init::normal(p.value, 0.5, rng);
  std::vector<Adapted<LoRTA<double>>> layers;
  const std::vector<std::string> names{"layers.0.q", "layers.0.v", "layers.1.q"};
  const std::vector<std::pair<Index, Index>> where{{0, 0}, {0, 1}, {1, 0}};
  for (const auto& [l, m] : where)
    layers.emplace_back(Linear<double>::random(16, 16, rng), LoRTA<double>(factors, l, m));
  io::save_peft<double>(tmp.path(), io::peft_config(factors->config()),
                        {{names[0], layers[0]}, {names[1], layers[1]}, {names[2], layers[2]}},
                        {.dtype = "F64"});
  const auto loaded = io::load_peft<double>(tmp.path());
  EXPECT_EQ(loaded.modules(), (std::vector<std::string>{"layers.0.q", "layers.0.v", "layers.1.q"}));
  EXPECT_EQ(loaded.config().module_map.at("layers.1.q"), (std::pair<Index, Index>{1, 0}));
  const Matrix<double> X = random_matrix<double>(4, 16, rng.next());
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto layer = loaded.wrap(names[i], layers[i].base());
    EXPECT_LT(max_rel_diff(layer.forward(X), layers[i].forward(X)), 1e-15) << names[i];
  }
  // One shared block: a gradient through one layer shows in every wrapped layer.
  auto a = loaded.wrap(names[0], layers[0].base());
  auto b = loaded.wrap(names[2], layers[2].base());
  a.forward(X);
  a.backward(random_matrix<double>(4, 16, rng.next()));
  EXPECT_GT(b.parameters()[0].grad.norm(), 0.0);
}

// ---------------------------------------------------------------------------
// PEFT's matching rules.

TEST(PeftConfig, TargetModulesListMatchesNamesAndDottedSuffixes) {
  auto c = config_of("LORA");
  c.target_modules = {"q_proj", "fc1"};
  EXPECT_TRUE(c.targets("fc1"));
  EXPECT_TRUE(c.targets("model.layers.0.self_attn.q_proj"));
  EXPECT_FALSE(c.targets("model.layers.0.self_attn.xq_proj"));
  EXPECT_FALSE(c.targets("fc10"));
  c.exclude_modules = {"layers.1.self_attn.q_proj"};
  EXPECT_FALSE(c.targets("model.layers.1.self_attn.q_proj"));
  EXPECT_TRUE(c.targets("model.layers.0.self_attn.q_proj"));
}

TEST(PeftConfig, TargetModulesRegexMustMatchTheWholeName) {
  const auto c = io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ".*\\.(q|v)_proj"})", "inline");
  EXPECT_EQ(c.target_modules_regex, ".*\\.(q|v)_proj");
  EXPECT_TRUE(c.targets("model.layers.3.v_proj"));
  EXPECT_FALSE(c.targets("model.layers.3.v_proj.inner"));
  EXPECT_FALSE(c.targets("v_proj"));  // the regex needs the dot
}

TEST(PeftConfig, OverlongRegexNumbersAreRefused) {
  // A 20-digit back-reference or repeat count once overflowed inside libstdc++'s regex compiler.
  const std::string digits(20, '9');
  const std::string backref = ".*\\\\" + digits + "x";
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ")" + backref + R"("})", "inline"),
                    "back-references are not supported");
  for (const std::string& pattern : {"a{" + digits + "}", "a{1," + digits + "}"}) {
    const std::string json = R"({"peft_type": "LORA", "target_modules": ")" + pattern + R"("})";
    EXPECT_PEFT_ERROR(io::PeftConfig::parse(json, "inline"), "'target_modules'");
    EXPECT_PEFT_ERROR(io::PeftConfig::parse(json, "inline"), "repeat count above 20000");
  }
  // Short counts, and digits after an escaped backslash (a literal), still compile.
  EXPECT_NO_THROW(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": "a{0,99}"})", "inline"));
  EXPECT_NO_THROW(
      io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": "a\\\\12345678901234567890"})", "inline"));
}

TEST(PeftConfig, RankAndAlphaPatternsFollowPeft) {
  const auto c = io::PeftConfig::parse(
      R"({"peft_type": "LORA", "target_modules": ["q", "v"], "r": 8, "lora_alpha": 16,
          "rank_pattern": {"layers.0.q": 2, "^model.*v": 4}, "alpha_pattern": {"q": 32}})",
      "inline");
  EXPECT_EQ(c.rank_for("model.layers.0.q"), 2);
  EXPECT_EQ(c.rank_for("layers.0.q"), 2);
  EXPECT_EQ(c.rank_for("model.layers.10.q"), 8);  // "(.*\.)?(layers.0.q)$" does not match
  EXPECT_EQ(c.rank_for("model.layers.5.v"), 4);
  EXPECT_EQ(c.alpha_for("model.layers.5.q"), 32.0);
  EXPECT_EQ(c.alpha_for("model.layers.5.v"), 16.0);
}

// PEFT takes the first key that matches, in the file's order (a Python dict).
TEST(PeftConfig, PatternsKeepTheFilesOrder) {
  const auto first = io::PeftConfig::parse(
      R"({"peft_type": "LORA", "target_modules": ["q"], "rank_pattern": {"q": 2, "layers.0.q": 4},
          "alpha_pattern": {"zz": 1, "q": 3}})", "inline");
  EXPECT_EQ(first.rank_for("layers.0.q"), 2);
  EXPECT_EQ(first.alpha_for("layers.0.q"), 3.0);
  const auto second = io::PeftConfig::parse(
      R"({"peft_type": "LORA", "target_modules": ["q"], "rank_pattern": {"layers.0.q": 4, "q": 2}})", "inline");
  EXPECT_EQ(second.rank_for("layers.0.q"), 4);
  EXPECT_EQ(second.rank_for("layers.1.q"), 2);
  EXPECT_EQ(second.to_json().at("rank_pattern").dump(), R"({"layers.0.q":4,"q":2})");
  EXPECT_EQ(first.to_json().at("alpha_pattern").dump(), R"({"zz":1.0,"q":3.0})");
}

// Values no adapter can be built from fail at load_peft, naming the field.
TEST(PeftConfig, RejectsValuesNoAdapterCanUse) {
  auto refused = [](const std::string& fields, const std::string& message) {
    EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"target_modules": ["q"], )" + fields + "}", "cfg"), message);
  };
  refused(R"("peft_type": "LORA", "r": 0)", "field 'r' must be an integer >= 1, got 0");
  refused(R"("peft_type": "LORA", "lora_alpha": -1)", "field 'lora_alpha' must be a finite value > 0, got -1");
  refused(R"("peft_type": "LORA", "lora_alpha": 0)", "field 'lora_alpha' must be a finite value > 0, got 0");
  refused(R"("peft_type": "LORA", "lora_dropout": 1)", "field 'lora_dropout' must be in [0, 1), got 1");
  refused(R"("peft_type": "LORA", "lora_dropout": -0.1)", "field 'lora_dropout' must be in [0, 1), got -0.1");
  refused(R"("peft_type": "LORA", "rank_pattern": {"q": 0})", "field 'rank_pattern['q']' must be an integer >= 1");
  refused(R"("peft_type": "LORA", "alpha_pattern": {"q": -2})", "field 'alpha_pattern['q']' must be a finite value > 0");
  refused(R"("peft_type": "LOKR", "alpha": 0)", "field 'alpha' must be a finite value > 0");
  refused(R"("peft_type": "LOKR", "module_dropout": 1.5)", "field 'module_dropout' must be in [0, 1)");
  refused(R"("peft_type": "C3A", "block_size": 0)", "field 'block_size' must be an integer >= 1");
  refused(R"("peft_type": "C3A", "block_size_pattern": {"q": -4})", "field 'block_size_pattern['q']'");
  refused(R"("peft_type": "SURM", "rank": 0)", "field 'rank' must be an integer >= 1");
  refused(R"("peft_type": "SURM_ADAPTER", "dropout": 1)", "field 'dropout' must be in [0, 1)");
  refused(R"("peft_type": "MELORA", "num_minis": 0)", "field 'num_minis' must be an integer >= 1");
  // PEFT allows r above the layer's smaller dimension; so does the loader.
  EXPECT_NO_THROW(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ["q"], "r": 4096})", "cfg"));
}

TEST(PeftConfig, FeedforwardListMatchesPlainSuffixesAndC3APatternsNeedADot) {
  auto c = config_of("IA3");
  c.feedforward_modules = {"down_proj"};
  EXPECT_TRUE(c.is_feedforward("mlp.down_proj"));
  EXPECT_TRUE(c.is_feedforward("mlp.xdown_proj"));  // PEFT uses endswith without a dot
  EXPECT_FALSE(c.is_feedforward("mlp.up_proj"));
  auto c3a = config_of("C3A");
  c3a.block_size = 64;
  c3a.block_size_pattern = {{"fc1", 16}};
  EXPECT_EQ(c3a.block_size_for("model.fc1"), 16);
  EXPECT_EQ(c3a.block_size_for("fc1"), 16);  // no key matches ".*\.fc1$"; PEFT then takes the key equal to the name
  EXPECT_EQ(c3a.block_size_for("model.xfc1"), 64);
  // PEFT does not group the key: "q_proj|v_proj" is ".*\.q_proj" or "v_proj$" from the start.
  c3a.block_size_pattern = {{"q_proj|v_proj", 8}};
  EXPECT_EQ(c3a.block_size_for("layers.q_proj"), 8);
  EXPECT_EQ(c3a.block_size_for("layers.v_proj"), 64);
  EXPECT_EQ(c3a.block_size_for("v_proj"), 8);
}

TEST(PeftConfig, RejectsBadFieldsWithTheirNames) {
  EXPECT_PEFT_ERROR(io::PeftConfig::parse("{", "cfg"), "not valid JSON");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse("[1]", "cfg"), "must be a JSON object");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"r": 8})", "cfg"), "missing the required field 'peft_type'");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "VERA", "target_modules": ["a"]})", "cfg"),
                    "peft_type 'VERA' is not supported; supported: LORA, IA3, C3A, LOKR");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ["a"], "r": "8"})", "cfg"),
                    "field 'r' must be an integer");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ["a"], "r": 8.5})", "cfg"),
                    "field 'r' must be an integer");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": "("})", "cfg"),
                    "is not a supported regular expression (missing ), unterminated subpattern");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA"})", "cfg"), "'target_modules' must name");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(
                        R"({"peft_type": "LORA", "target_modules": ["a"], "use_dora": true, "lora_bias": true})", "cfg"),
                    "lora_bias = true is not supported with use_dora = true (DoRA)");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ["a"], "bias": "some"})", "cfg"),
                    "field 'bias' must be 'none', 'all' or '<type>_only' (e.g. 'lora_only', 'c3a_only')");
  EXPECT_EQ(io::PeftConfig::parse(R"({"peft_type": "C3A", "target_modules": ["a"], "bias": "c3a_only"})", "cfg").bias,
            "c3a_only");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(
                        R"({"peft_type": "IA3", "target_modules": ["q", "v"], "feedforward_modules": ["fc"]})", "cfg"),
                    "feedforward module 'fc' must also be in target_modules");
  EXPECT_PEFT_ERROR(
      io::PeftConfig::parse(R"({"peft_type": "SURM", "target_modules": ["a"], "structure": "banded"})", "cfg"),
      "field 'structure' must be one of 'circulant'");
}

// ---------------------------------------------------------------------------
// Malformed directories.

/// A copy of a golden directory to break.
fs::path copy_golden(const TempDir& tmp, const std::string& name) {
  const fs::path dir = tmp / name;
  fs::create_directories(dir);
  for (const char* file : {"adapter_config.json", "adapter_model.safetensors"})
    fs::copy_file(golden_dir(name) + "/" + file, dir / file);
  return dir;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(PeftDirErrors, MissingDirectoryAndFiles) {
  TempDir tmp;
  EXPECT_PEFT_ERROR(io::load_peft<double>(tmp / "nowhere"), "no such file or directory");
  EXPECT_PEFT_ERROR(io::load_peft<double>(tmp.path()), "missing file");
  const auto dir = copy_golden(tmp, "lora_f64");
  fs::remove(dir / "adapter_model.safetensors");
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "adapter_model.safetensors");
}

TEST(PeftDirErrors, BadConfigs) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  write_text(dir / "adapter_config.json", "this is not json");
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "not valid JSON");
  write_text(dir / "adapter_config.json", R"({"r": 8, "target_modules": ["fc1", "fc2"]})");
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "peft_type");
  write_text(dir / "adapter_config.json", R"({"peft_type": "ADALORA", "target_modules": ["fc1", "fc2"]})");
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "'ADALORA' is not supported");
}

TEST(PeftDirErrors, ConfigAndTensorsDisagree) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  const std::string config = read_text(dir / "adapter_config.json");
  // A target with no tensors loads, as in PEFT (a config written for several
  // architectures lists modules a model lacks); only the adapted ones are listed.
  std::string more = config;
  more.replace(more.find("\"fc1\""), 5, "\"fc1\", \"fc3\"");
  write_text(dir / "adapter_config.json", more);
  EXPECT_EQ(io::load_peft<double>(dir).modules(), (std::vector<std::string>{"fc1", "fc2"}));
  // Tensors for a module the config does not target.
  std::string fewer = config;
  fewer.replace(fewer.find("\"fc2\",\n    \"fc1\""), 16, "\"fc1\"");
  write_text(dir / "adapter_config.json", fewer);
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "is for module 'fc2', which the config's target_modules");
  // The wrong rank for the tensors: a shape mismatch when wrapping.
  std::string rank = config;
  rank.replace(rank.find("\"r\": 8"), 6, "\"r\": 4");
  write_text(dir / "adapter_config.json", rank);
  GoldenCase golden("lora_f64");
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir).wrap("fc1", golden.base("fc1")),
                    "tensor 'base_model.model.fc1.lora_A.weight' has shape [8, 48], the layer needs [4, 48]");
}

TEST(PeftDirErrors, WrappingTheWrongLayer) {
  const auto adapters = io::load_peft<double>(golden_dir("lora_f64"));
  GoldenCase golden("lora_f64");
  EXPECT_PEFT_ERROR(adapters.wrap("fc1", golden.base("fc2")), "the layer needs [8, 64]");
  EXPECT_PEFT_ERROR(adapters.wrap("fc9", golden.base("fc1")), "no adapter for module 'fc9'; the directory adapts fc1, fc2");
}

TEST(PeftDirErrors, TruncatedAndGarbledWeights) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  const std::string bytes = read_text(dir / "adapter_model.safetensors");
  write_text(dir / "adapter_model.safetensors", bytes.substr(0, bytes.size() - 100));
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "adapter_model.safetensors");
  std::string garbled = bytes;
  for (std::size_t i = 8; i < 40; ++i) garbled[i] = '#';
  write_text(dir / "adapter_model.safetensors", garbled);
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "adapter_model.safetensors");
  // A stray tensor that is no LoRA tensor.
  auto tensors = io::read_safetensors(golden_dir("lora_f64") + "/adapter_model.safetensors").tensors();
  tensors.emplace("base_model.model.fc1.lora_C.weight", tensors.begin()->second);
  io::write_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir), "'base_model.model.fc1.lora_C.weight' is not a LORA tensor");
}

TEST(PeftDirErrors, NonFiniteTensorsAreRefusedOnLoadAndNeverMerged) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  auto tensors = io::read_safetensors(dir / "adapter_model.safetensors").tensors();
  Matrix<double> B = tensors.at("base_model.model.fc1.lora_B.weight").to_matrix<double>();
  B(3, 2) = std::numeric_limits<double>::quiet_NaN();
  B(4, 1) = std::numeric_limits<double>::infinity();
  tensors["base_model.model.fc1.lora_B.weight"] = io::Tensor::from(B, {64, 8}, "F64");
  io::write_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  GoldenCase golden("lora_f64");
  EXPECT_PEFT_ERROR(io::load_peft<double>(dir).wrap("fc1", golden.base("fc1")),
                    "tensor 'base_model.model.fc1.lora_B.weight' holds 2 NaN or Inf value(s)");
  // Asked for (to inspect a diverged run), it loads; merge refuses it with or
  // without safe_merge and leaves the base bit for bit as it was.
  auto layer = io::load_peft<double>(dir, {.allow_non_finite = true}).wrap("fc1", golden.base("fc1"));
  const Matrix<double> W = layer.base().weight();
  for (bool safe : {true, false}) {
    EXPECT_PEFT_ERROR(layer.merge(safe), "parameter 'lora_B' holds NaN or Inf");
    EXPECT_FALSE(layer.merged());
    EXPECT_EQ(layer.base().weight(), W);
  }
}

TEST(PeftDirErrors, AnF64ValueBeyondFloatIsNonFiniteInAFloatLoad) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  auto tensors = io::read_safetensors(dir / "adapter_model.safetensors").tensors();
  Matrix<double> A = tensors.at("base_model.model.fc2.lora_A.weight").to_matrix<double>();
  A(0, 0) = 1e300;
  tensors["base_model.model.fc2.lora_A.weight"] = io::Tensor::from(A, {}, "F64");
  io::write_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  GoldenCase golden("lora_f64");
  EXPECT_NO_THROW(io::load_peft<double>(dir).wrap("fc2", golden.base("fc2")));
  EXPECT_PEFT_ERROR(io::load_peft<float>(dir).wrap("fc2", golden.base<float>("fc2")),
                    "'base_model.model.fc2.lora_A.weight' holds 1 NaN or Inf");
}

TEST(PeftDirErrors, UnmergeComparesTheParametersBitwise) {
  Rng rng(9);
  Adapted<LoRA<double>> layer(Linear<double>::random(6, 5, rng), LoRA<double>(6, 5, {.r = 2}));
  layer.adapter().parameters()[1].value.setConstant(0.25);
  layer.adapter().parameters()[0].value(0, 0) = 0.0;
  layer.merge();
  layer.adapter().parameters()[0].value(0, 0) = -0.0;  // == 0.0, but not the merged value
  EXPECT_PEFT_ERROR(layer.unmerge(), "changed while merged");
  layer.adapter().parameters()[0].value(0, 0) = 0.0;
  EXPECT_NO_THROW(layer.unmerge());
}

TEST(PeftDirErrors, MissingPathsAndPlainFilesAreNamedForWhatTheyAre) {
  TempDir tmp;
  EXPECT_PEFT_ERROR(io::load_peft<double>(tmp / "nothing_here"), "no such file or directory");
  write_text(tmp / "adapter.safetensors", "x");
  EXPECT_PEFT_ERROR(io::load_peft<double>(tmp / "adapter.safetensors"),
                    "not a directory; expected a directory holding adapter_config.json and adapter_model.safetensors");
}

TEST(PeftDir, ConfigsBuiltFromOurAdapterConfigsDescribeTheirAdapters) {
  TempDir tmp;
  Rng rng(2);
  auto save_and_reload = [&](const io::PeftConfig& config, auto adapter) {
    using A = decltype(adapter);
    const Index d_in = adapter.in_features(), d_out = adapter.out_features();
    Adapted<A> layer(Linear<double>::random(d_in, d_out, rng), std::move(adapter));
    for (auto& p : layer.adapter().parameters()) init::normal(p.value, 0.3, rng);
    io::save_peft<double>(tmp / config.peft_type, config, {{"encoder.fc", layer}}, {.dtype = "F64"});
    auto loaded = io::load_peft<double>(tmp / config.peft_type).wrap("encoder.fc", layer.base());
    const Matrix<double> X = random_matrix<double>(3, d_in, rng.next());
    EXPECT_LT(max_rel_diff(loaded.forward(X), layer.forward(X)), 1e-15) << config.peft_type;
  };
  const LoRAConfig lora{.r = 2, .alpha = 5, .rslora = true, .lora_bias = true};
  save_and_reload(io::peft_config(lora), LoRA<double>(8, 6, lora));
  const C3AConfig c3a{.block_size = 2};
  save_and_reload(io::peft_config(c3a), C3A<double>(8, 6, c3a));
  const LoKrConfig lokr{.r = 2, .alpha = 3};
  save_and_reload(io::peft_config(lokr), LoKr<double>(8, 6, lokr));
  const SURMConfig surm{.structure = Structure::LDR, .rank = 2, .alpha = 2};
  save_and_reload(io::peft_config(surm), SURM<double>(8, 6, surm));
  const SURMAdapterConfig surm_adapter{.structure = Structure::Kronecker, .rank = 2, .activation = Activation::Identity};
  save_and_reload(io::peft_config(surm_adapter), SURMAdapter<double>(8, 8, surm_adapter));
  const REDConfig red{.bias = false};
  save_and_reload(io::peft_config(red), RED<double>(8, 6, red));
  const MELoRAConfig melora{.r = 1, .n = 2, .alpha = 3};
  save_and_reload(io::peft_config(melora), MELoRA<double>(8, 6, melora));
  save_and_reload(io::ia3_peft_config({"fc"}, {"fc"}), IA3<double>(8, 6, {.feedforward = true}));
}

TEST(PeftDir, BiasAllKeepsTheBiasesOfLayersWithoutAnAdapter) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  auto tensors = io::read_safetensors(dir / "adapter_model.safetensors").tensors();
  const Vector<double> b1 = random_matrix<double>(64, 1, 5), b3 = random_matrix<double>(7, 1, 6);
  tensors.emplace("base_model.model.fc1.base_layer.bias", io::Tensor::from(b1.transpose(), {64}, "F64"));
  tensors.emplace("base_model.model.fc3.bias", io::Tensor::from(b3.transpose(), {7}, "F64"));
  io::write_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  std::string config = read_text(dir / "adapter_config.json");
  config.replace(config.find("\"bias\": \"none\""), 14, "\"bias\": \"all\"");
  write_text(dir / "adapter_config.json", config);
  const auto adapters = io::load_peft<double>(dir);
  EXPECT_EQ(adapters.config().bias, "all");
  EXPECT_EQ(adapters.modules(), (std::vector<std::string>{"fc1", "fc2"}));
  EXPECT_EQ(*adapters.saved_bias("fc3"), b3);
  EXPECT_FALSE(adapters.saved_bias("fc2").has_value());
  GoldenCase golden("lora_f64");
  EXPECT_EQ(adapters.wrap("fc1", golden.base("fc1")).base().bias(), b1);  // the trained bias replaces the base's
}

TEST(PeftDirErrors, SaveRefusesModulesTheConfigDoesNotDescribe) {
  TempDir tmp;
  Rng rng(1);
  Adapted<LoRA<double>> layer(Linear<double>::random(16, 16, rng), LoRA<double>(16, 16, {.r = 4}));
  auto config = config_of("LORA");
  config.r = 8;
  EXPECT_PEFT_ERROR(io::save_peft<double>(tmp.path(), config, {{"fc1", layer}}),
                    "module 'fc1': the config does not describe its adapter (r: the config gives 8, the layer has 4)");
  config.r = 4;
  config.target_modules = {"fc2"};
  EXPECT_PEFT_ERROR(io::save_peft<double>(tmp.path(), config, {{"fc1", layer}}), "not selected by the config");
  config.target_modules.clear();
  EXPECT_PEFT_ERROR(io::save_peft<double>(tmp.path(), config, {{"fc1", layer}}, {.dtype = "F16"}),
                    "dtype must be F32 or F64");
  io::save_peft<double>(tmp.path(), config, {{"fc1", layer}});
  EXPECT_EQ(io::load_peft<double>(tmp.path()).config().target_modules, (std::vector<std::string>{"fc1"}));
}

// The issue's case: a LoRA saved with a config of other scaling would reload
// as a different adapter (outputs off by ~50%), so it is refused.
TEST(PeftDirErrors, SaveRefusesAConfigThatWouldReloadAsAnotherAdapter) {
  TempDir tmp;
  Rng rng(3);
  Adapted<LoRA<float>> layer(Linear<float>::random(32, 32, rng), LoRA<float>(32, 32, {.r = 4, .alpha = 16}));
  EXPECT_PEFT_ERROR(
      io::save_peft<float>(tmp.path(), io::peft_config(LoRAConfig{.r = 4, .alpha = 4, .rslora = true}), {{"fc", layer}}),
      "save_peft('" + tmp.path().string() + "'): module 'fc': the config does not describe its adapter (lora_alpha: "
      "the config gives 4.0, the layer has 16.0; use_rslora: the config gives true, the layer has false)");
  auto wrong_type = io::ia3_peft_config({"fc"});
  EXPECT_PEFT_ERROR(io::save_peft<float>(tmp.path(), wrong_type, {{"fc", layer}}),
                    "peft_type: the config gives IA3, the layer is LORA");
  auto pattern = io::peft_config(LoRAConfig{.r = 4, .alpha = 16});
  pattern.alpha_pattern = {{"fc", 8.0}};
  EXPECT_PEFT_ERROR(io::save_peft<float>(tmp.path(), pattern, {{"fc", layer}}), "lora_alpha: the config gives 8.0");
  EXPECT_FALSE(fs::exists(tmp / "adapter_config.json"));
  layer.set_base_bias_trainable(true);
  EXPECT_PEFT_ERROR(io::save_peft<float>(tmp.path(), io::peft_config(LoRAConfig{.r = 4, .alpha = 16}), {{"fc", layer}}),
                    "module 'fc' trains its base bias, which bias = \"none\" would not save");
}

// Without a config, save_peft writes the layers' own: the common r and alpha,
// patterns for the rest (a short name that would also match a longer one gets
// the longer one its own key), bias = "lora_only" for a trained base bias.
TEST(PeftDir, SaveWithoutAConfigDescribesEachLayer) {
  TempDir tmp;
  Rng rng(4);
  const std::vector<std::pair<std::string, LoRAConfig>> specs = {
      {"model.layers.0.q", {.r = 4, .alpha = 8}},
      {"model.layers.1.q", {.r = 4, .alpha = 8}},
      {"q", {.r = 2, .alpha = 8}},  // "(.*\.)?(q)$" also matches the two above
      {"model.layers.0.v", {.r = 4, .alpha = 3, .init = LoRAInit::None}}};
  std::vector<Adapted<LoRA<double>>> layers;
  for (const auto& [name, config] : specs) {
    layers.emplace_back(Linear<double>::random(12, 10, rng), LoRA<double>(12, 10, config));
    for (auto& p : layers.back().parameters()) init::normal(p.value, 0.5, rng);
  }
  layers[1].set_base_bias_trainable(true);
  layers[1].base().bias().setConstant(0.25);
  std::vector<io::SavedModule<double>> modules;
  for (std::size_t i = 0; i < specs.size(); ++i) modules.emplace_back(specs[i].first, layers[i]);
  io::save_peft(tmp.path(), modules, {.dtype = "F64"});

  const auto loaded = io::load_peft<double>(tmp.path());
  const auto& c = loaded.config();
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(c.lora_alpha, 8.0);
  EXPECT_EQ(c.bias, "lora_only");
  const Matrix<double> X = random_matrix<double>(3, 12, 9);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].first);
    EXPECT_EQ(c.rank_for(specs[i].first), specs[i].second.r);
    EXPECT_EQ(c.alpha_for(specs[i].first), specs[i].second.alpha);
    auto again = loaded.wrap(specs[i].first, Linear<double>(layers[i].base().weight(), Vector<double>::Zero(10)));
    EXPECT_TRUE(again.base_bias_trainable());
    EXPECT_LT(max_rel_diff(again.forward(X), layers[i].forward(X)), 1e-15);
  }
  // Options adapter_config.json holds once must agree.
  Adapted<LoRA<double>> rs(Linear<double>::random(12, 10, rng), LoRA<double>(12, 10, {.r = 4, .alpha = 8, .rslora = true}));
  modules.emplace_back("k", rs);
  EXPECT_PEFT_ERROR(io::save_peft(tmp / "mixed", modules),
                    "module 'k' differs from 'model.layers.0.q' in what adapter_config.json holds once for all modules "
                    "(use_rslora: the config gives false, the layer has true)");
  Adapted<IA3<double>> ia3(Linear<double>::random(12, 10, rng), IA3<double>(12, 10, {}));
  EXPECT_PEFT_ERROR(io::save_peft<double>(tmp / "types", {{"q", layers[0]}, {"o", ia3}}),
                    "peft_type: the config gives LORA, the layer is IA3");
}

// bias = "lora_only": the adapted layers' base biases are trained, as in PEFT
// (3 gradient tensors for a LoRA layer, not 2), saved and loaded back.
TEST(PeftDir, BiasLoraOnlyMakesTheBaseBiasTrainable) {
  TempDir tmp;
  const auto dir = copy_golden(tmp, "lora_f64");
  std::string config = read_text(dir / "adapter_config.json");
  config.replace(config.find("\"bias\": \"none\""), 14, "\"bias\": \"lora_only\"");
  write_text(dir / "adapter_config.json", config);
  const auto adapters = io::load_peft<double>(dir);
  GoldenCase golden("lora_f64");
  auto fc1 = adapters.wrap("fc1", golden.base("fc1"));
  const auto params = fc1.parameters();
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[2].name, "base_layer.bias");
  EXPECT_EQ(params[2].value.data(), fc1.base().bias().data());  // the view is the base's bias itself
  EXPECT_EQ(fc1.num_params(), 8 * 48 + 64 * 8 + 64);
  const Matrix<double> X = random_matrix<double>(5, 48, 1), G = random_matrix<double>(5, 64, 2);
  fc1.zero_grad();
  fc1.forward(X);
  fc1.backward(G);
  EXPECT_LT(max_rel_diff(params[2].grad, G.colwise().sum().eval()), 1e-14);
  // Without a bias in the base there is nothing to train.
  auto no_bias = adapters.wrap("fc1", Linear<double>(golden.base("fc1").weight()));
  EXPECT_EQ(no_bias.parameters().size(), 2u);
}

// DoRA is LORA with use_dora = true: the field is read and written, refused
// with lora_bias (as PEFT refuses it) and outside LORA.
TEST(PeftConfig, UseDoraIsLoraWithAMagnitudeVector) {
  const auto c = io::PeftConfig::parse(R"({"peft_type": "LORA", "target_modules": ["a"], "use_dora": true})", "cfg");
  EXPECT_TRUE(c.use_dora);
  EXPECT_EQ(c.to_json().at("use_dora"), true);
  EXPECT_EQ(io::peft_config(DoRAConfig{.r = 4}).to_json().at("use_dora"), true);
  EXPECT_EQ(io::peft_config(LoRAConfig{.r = 4}).to_json().at("use_dora"), false);
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(R"({"peft_type": "IA3", "target_modules": ["a"], "use_dora": true})", "cfg"),
                    "PeftConfig('cfg'): field 'use_dora' = true applies to peft_type LORA only, got IA3");
  EXPECT_PEFT_ERROR(io::PeftConfig::parse(
                        R"({"peft_type": "LORA", "target_modules": ["a"], "use_dora": true, "lora_bias": true})", "cfg"),
                    "PeftConfig('cfg'): lora_bias = true is not supported with use_dora = true (DoRA), as in PEFT; expected "
                    "lora_bias = false");
}

// save_peft writes DoRA layers as PEFT does (use_dora: true, the 1-D
// "lora_magnitude_vector" next to lora_A/B.weight), load_peft builds DoRA from
// them, and configs that would reload them as another adapter are refused.
TEST(PeftDir, DoRASavesAndLoadsAsPeftAndRefusesMismatches) {
  TempDir tmp;
  Rng rng(5);
  Adapted<DoRA<double>> q(Linear<double>::random(12, 10, rng), DoRA<double>(12, 10, {.r = 4, .alpha = 8, .rslora = true}));
  Adapted<DoRA<double>> v(Linear<double>::random(12, 10, rng), DoRA<double>(12, 10, {.r = 2, .alpha = 8, .rslora = true}));
  for (auto* layer : {&q, &v})
    for (auto& p : layer->parameters()) p.value.array() *= 1.0 + 0.5 * random_matrix<double>(p.value.rows(), p.value.cols(), 3).array();
  for (auto* layer : {&q, &v}) init::normal(layer->adapter().B(), 0.3, rng);
  io::save_peft<double>(tmp.path(), {{"q", q}, {"v", v}}, {.dtype = "F64"});

  const auto st = io::read_safetensors(tmp / "adapter_model.safetensors");
  ASSERT_TRUE(st.contains("base_model.model.q.lora_magnitude_vector"));
  EXPECT_EQ(st.at("base_model.model.q.lora_magnitude_vector").shape, (std::vector<std::int64_t>{10}));
  EXPECT_TRUE(st.contains("base_model.model.v.lora_A.weight"));
  const auto loaded = io::load_peft<double>(tmp.path());
  EXPECT_TRUE(loaded.config().use_dora);
  EXPECT_TRUE(loaded.config().use_rslora);
  EXPECT_EQ(loaded.config().rank_for("v"), 2);
  const Matrix<double> X = random_matrix<double>(3, 12, 9);
  for (auto [name, layer] : {std::pair{"q", &q}, std::pair{"v", &v}}) {
    auto again = loaded.wrap(name, Linear<double>(layer->base().weight(), layer->base().bias()));
    ASSERT_NE(again.get<DoRA<double>>(), nullptr) << name;
    EXPECT_EQ(again.get<DoRA<double>>()->adapter().magnitude(), layer->adapter().magnitude());
    EXPECT_LT(max_rel_diff(again.forward(X), layer->forward(X)), 1e-15);
  }

  // A LoRA config for DoRA layers (or the reverse) would reload another adapter.
  EXPECT_PEFT_ERROR(io::save_peft<double>(tmp / "lora", io::peft_config(LoRAConfig{.r = 4, .alpha = 8, .rslora = true}),
                                          {{"q", q}}),
                    "module 'q': the config does not describe its adapter (use_dora: the config gives false, the layer "
                    "has true)");
  Adapted<LoRA<double>> k(Linear<double>::random(12, 10, rng), LoRA<double>(12, 10, {.r = 4, .alpha = 8, .rslora = true}));
  EXPECT_PEFT_ERROR(io::save_peft<double>(tmp / "mixed", {{"q", q}, {"k", k}}),
                    "module 'k' differs from 'q' in what adapter_config.json holds once for all modules (use_dora: the "
                    "config gives true, the layer has false)");

  // A magnitude in a plain LoRA directory, or none in a DoRA one, is refused.
  std::string config = read_text(tmp / "adapter_config.json");
  config.replace(config.find("\"use_dora\": true"), 16, "\"use_dora\": false");
  write_text(tmp / "plain" / "adapter_config.json", config);
  fs::copy_file(tmp / "adapter_model.safetensors", tmp / "plain" / "adapter_model.safetensors");
  EXPECT_PEFT_ERROR(io::load_peft<double>(tmp / "plain"),
                    "tensor 'base_model.model.q.lora_magnitude_vector' is not a LORA tensor");
  io::TensorMap tensors = st.tensors();
  tensors.erase("base_model.model.v.lora_magnitude_vector");
  fs::create_directories(tmp / "no_m");
  fs::copy_file(tmp / "adapter_config.json", tmp / "no_m" / "adapter_config.json");
  io::write_safetensors(tmp / "no_m" / "adapter_model.safetensors", tensors, {});
  EXPECT_PEFT_ERROR(io::load_peft<double>(tmp / "no_m").wrap("v", Linear<double>::random(12, 10, rng)),
                    "missing tensor 'base_model.model.v.lora_magnitude_vector' for module 'v'");
}

}  // namespace
}  // namespace peft::test
