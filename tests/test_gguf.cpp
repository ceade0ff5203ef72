// GGUF: LoRA adapters in llama.cpp's format (what llama.cpp will compute:
// ΔW = alpha / r · lora_b · lora_a, checked against our delta_weight() for
// rsLoRA and per-module r/alpha), LLaMA tensor names, and a reader that
// refuses every malformed file (each prefix of a valid file, flipped bytes,
// hostile counts) with peft::Error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <peft/peft.hpp>

#include "golden_case.hpp"
#include "test_util.hpp"

namespace peft::test {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return fs::temp_directory_path() / ("peft_gguf_" + std::string(info->name()) + "_" + name);
}

std::vector<unsigned char> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// ΔW as llama.cpp applies the file's pair for `tensor`: alpha / r · B · A.
Matrix<double> llama_delta(const io::Gguf& g, const std::string& tensor) {
  const auto* a = g.tensor(tensor + ".lora_a");
  const auto* b = g.tensor(tensor + ".lora_b");
  EXPECT_TRUE(a && b) << tensor;
  const Matrix<double> A = g.to_matrix<double>(*a), B = g.to_matrix<double>(*b);
  const double alpha = g.find("adapter.lora.alpha")->value.get<double>();
  return alpha / static_cast<double>(A.rows()) * B * A;
}

TEST(Gguf, LoRALayersComeOutWithTheirOwnScaling) {
  const auto path = temp_path("adapter.gguf");
  Rng rng(1);
  // q: α/r = 2; k: the same scaling at another rank; v: rsLoRA; o: r > d_in is allowed too.
  const std::vector<std::pair<std::string, LoRAConfig>> specs = {
      {"model.layers.0.self_attn.q_proj", {.r = 4, .alpha = 8}},
      {"model.layers.0.self_attn.k_proj", {.r = 2, .alpha = 4}},
      {"model.layers.1.self_attn.v_proj", {.r = 3, .alpha = 5, .rslora = true}},
      {"model.layers.1.mlp.down_proj", {.r = 12, .alpha = 3}}};
  std::vector<Adapted<LoRA<double>>> layers;
  for (const auto& [name, config] : specs) {
    layers.emplace_back(Linear<double>::random(10, 6, rng), LoRA<double>(10, 6, config));
    init::normal(layers.back().adapter().B(), 0.5, rng);
  }
  std::vector<io::SavedModule<double>> modules;
  for (std::size_t i = 0; i < specs.size(); ++i) modules.emplace_back(specs[i].first, layers[i]);
  io::save_gguf_lora(path, modules, io::llama_tensor_name, {.name = "test adapter"});

  const auto g = io::read_gguf(path);
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.find("general.type")->value, "adapter");
  EXPECT_EQ(g.find("general.architecture")->value, "llama");
  EXPECT_EQ(g.find("general.name")->value, "test adapter");
  EXPECT_EQ(g.find("adapter.type")->value, "lora");
  EXPECT_EQ(g.find("adapter.lora.alpha")->type, io::GgufType::Float32);
  EXPECT_EQ(g.find("adapter.lora.alpha")->value.get<double>(), 8.0);  // q's s·r; the others fold s·r / 8 into lora_b
  ASSERT_EQ(g.tensors.size(), 8u);
  const auto* a = g.tensor("blk.0.attn_q.weight.lora_a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<std::int64_t>{4, 10}));
  EXPECT_EQ(a->ggml_type, io::kGgmlF32);
  EXPECT_EQ(g.tensor("blk.1.ffn_down.weight.lora_b")->shape, (std::vector<std::int64_t>{6, 12}));
  const char* tensors[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.attn_v.weight", "blk.1.ffn_down.weight"};
  for (std::size_t i = 0; i < specs.size(); ++i)
    EXPECT_LT(max_rel_diff(llama_delta(g, tensors[i]), layers[i].adapter().delta_weight()), 1e-6) << tensors[i];
  fs::remove(path);
}

TEST(Gguf, ALoadedPeftDirectoryKeepsRankAndAlphaPatterns) {
  const auto path = temp_path("golden.gguf");
  auto adapters = io::load_peft<double>(kGoldenDir + "/peft/lora_f64");
  auto names = [](const std::string& module) { return "blk.0." + module + ".weight"; };
  io::save_gguf_lora(path, adapters, names);
  const auto g = io::read_gguf(path);
  GoldenCase golden("lora_f64");
  for (const std::string module : {"fc1", "fc2"}) {
    auto layer = adapters.wrap(module, golden.base(module));
    EXPECT_LT(max_rel_diff(llama_delta(g, names(module)), layer.delta_weight()), 1e-6) << module;
  }
  fs::remove(path);
}

// llama.cpp's converter interleaves the two rotary halves of each q/k head's
// rows; lora_b must follow. One head of 4 rows: rows (0, 2, 1, 3); 2 x 4 rows
// per head: (0, 2, 1, 3, 4, 6, 5, 7).
TEST(Gguf, QAndKFollowTheConvertersRotaryPermutation) {
  const auto path = temp_path("rope.gguf");
  Rng rng(5);
  Adapted<LoRA<double>> q(Linear<double>::random(6, 8, rng), LoRA<double>(6, 8, {.r = 2, .alpha = 4}));
  Adapted<LoRA<double>> k(Linear<double>::random(6, 4, rng), LoRA<double>(6, 4, {.r = 2, .alpha = 4}));
  Adapted<LoRA<double>> v(Linear<double>::random(6, 4, rng), LoRA<double>(6, 4, {.r = 2, .alpha = 4}));
  for (auto* l : {&q, &k, &v}) init::normal(l->adapter().B(), 0.5, rng);
  io::save_gguf_lora<double>(path, {{"model.layers.0.self_attn.q_proj", q}, {"model.layers.0.self_attn.k_proj", k},
                                    {"model.layers.0.self_attn.v_proj", v}},
                             io::llama_tensors(/*heads=*/2, /*kv_heads=*/1));
  const auto g = io::read_gguf(path);
  auto rows = [](const Matrix<double>& M, std::vector<Index> order) {
    Matrix<double> out(M.rows(), M.cols());
    for (std::size_t i = 0; i < order.size(); ++i) out.row(static_cast<Index>(i)) = M.row(order[i]);
    return out;
  };
  EXPECT_LT(max_rel_diff(llama_delta(g, "blk.0.attn_q.weight"), rows(q.adapter().delta_weight(), {0, 2, 1, 3, 4, 6, 5, 7})), 1e-6);
  EXPECT_LT(max_rel_diff(llama_delta(g, "blk.0.attn_k.weight"), rows(k.adapter().delta_weight(), {0, 2, 1, 3})), 1e-6);
  EXPECT_LT(max_rel_diff(llama_delta(g, "blk.0.attn_v.weight"), v.adapter().delta_weight()), 1e-6);
  EXPECT_PEFT_ERROR(io::save_gguf_lora<double>(path, {{"model.layers.0.self_attn.k_proj", k}}, io::llama_tensors(4, 4)),
                    "tensor 'blk.0.attn_k.weight' has 4 rows, which 4 heads of even size cannot split");
  EXPECT_PEFT_ERROR(io::llama_tensors(4, 3), "kv_heads dividing heads");
  fs::remove(path);
}

TEST(Gguf, LlamaTensorNames) {
  EXPECT_EQ(io::llama_tensor_name("model.layers.12.self_attn.o_proj"), "blk.12.attn_output.weight");
  EXPECT_EQ(io::llama_tensor_name("base_model.model.model.layers.0.mlp.gate_proj"), "blk.0.ffn_gate.weight");
  EXPECT_EQ(io::llama_tensor_name("layers.3.mlp.up_proj"), "blk.3.ffn_up.weight");
  EXPECT_EQ(io::llama_tensor_name("lm_head"), "output.weight");
  EXPECT_PEFT_ERROR(io::llama_tensor_name("model.layers.x.self_attn.q_proj"), "is not a LLaMA projection");
  EXPECT_PEFT_ERROR(io::llama_tensor_name("encoder.fc1"), "llama_tensor_name: module 'encoder.fc1'");
}

TEST(Gguf, RefusesWhatGgufAdaptersCannotHold) {
  const auto path = temp_path("refused.gguf");
  Rng rng(2);
  Adapted<IA3<double>> ia3(Linear<double>::random(8, 8, rng), IA3<double>(8, 8, {}));
  EXPECT_PEFT_ERROR(io::save_gguf_lora<double>(path, {{"lm_head", ia3}}, io::llama_tensor_name),
                    "module 'lm_head' is not a LoRA layer; llama.cpp's GGUF adapters hold LoRA only");
  Adapted<LoRA<double>> biased(Linear<double>::random(8, 8, rng), LoRA<double>(8, 8, {.r = 2, .lora_bias = true}));
  EXPECT_PEFT_ERROR(io::save_gguf_lora<double>(path, {{"lm_head", biased}}, io::llama_tensor_name), "has lora_bias");
  Adapted<LoRA<double>> lora(Linear<double>::random(8, 8, rng), LoRA<double>(8, 8, {.r = 2}));
  EXPECT_PEFT_ERROR(io::save_gguf_lora<double>(path, {{"lm_head", lora}, {"lm_head", lora}}, io::llama_tensor_name),
                    "tensor 'output.weight' given twice");
  lora.adapter().A()(0, 0) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_PEFT_ERROR(io::save_gguf_lora<double>(path, {{"lm_head", lora}}, io::llama_tensor_name), "holds NaN or Inf");
  EXPECT_FALSE(fs::exists(path));
}

// Every strict prefix of a valid file, and every single flipped byte, must
// end in peft::Error or a parse whose tensors lie inside the data.
TEST(GgufErrors, TruncatedAndCorruptedFiles) {
  const auto path = temp_path("valid.gguf");
  Rng rng(3);
  Adapted<LoRA<float>> lora(Linear<float>::random(8, 4, rng), LoRA<float>(8, 4, {.r = 2}));
  io::save_gguf_lora<float>(path, {{"lm_head", lora}}, io::llama_tensor_name);
  const auto bytes = file_bytes(path);
  fs::remove(path);
  EXPECT_NO_THROW(io::parse_gguf(bytes, "valid"));
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(io::parse_gguf(std::vector<unsigned char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)), "cut"),
                 Error)
        << n;
  for (std::size_t i = 0; i < bytes.size(); ++i)
    for (const unsigned char flip : {0x01, 0x80, 0xff}) {
      auto bad = bytes;
      bad[i] ^= flip;
      try {
        const auto g = io::parse_gguf(bad, "flipped");
        for (const auto& t : g.tensors)
          if (t.bytes && (t.shape.size() == 1 || t.shape.size() == 2)) (void)g.to_matrix<double>(t);
      } catch (const Error&) {
      }
    }
}

/// A GGUF header by hand: magic, version, counts, then `body`.
std::vector<unsigned char> gguf(std::uint32_t version, std::uint64_t tensors, std::uint64_t entries,
                                const std::string& body) {
  std::string s;
  auto put = [&](auto v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(std::uint32_t{0x46554747});
  put(version);
  put(tensors);
  put(entries);
  s += body;
  return {s.begin(), s.end()};
}

template <class V>
std::string le(V v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}
std::string gstr(const std::string& s) { return le(std::uint64_t{s.size()}) + s; }

TEST(GgufErrors, HostileHeadersAreNamed) {
  auto refused = [](const std::vector<unsigned char>& bytes, const std::string& message) {
    EXPECT_PEFT_ERROR(io::parse_gguf(bytes, "bad"), message);
  };
  refused({'G', 'G', 'U', 'X', 3, 0, 0, 0}, "read_gguf('bad'): not a GGUF file");
  refused(gguf(1, 0, 0, ""), "GGUF version 1, expected 2 or 3");
  refused(gguf(3, std::uint64_t{1} << 62, 0, ""), "tensor count 4611686018427387904 cannot fit in the file");
  refused(gguf(3, 0, std::uint64_t{1} << 40, ""), "the metadata count 1099511627776 cannot fit");
  refused(gguf(3, 0, 1, gstr("k") + le(std::uint32_t{99})), "unknown metadata value type 99");
  refused(gguf(3, 0, 1, le(std::uint64_t{1} << 50) + std::string(16, '\0')), "the file ends inside a metadata key");
  refused(gguf(3, 0, 1, gstr("k") + le(std::uint32_t{7}) + le(std::uint8_t{2})), "a bool holds 2, expected 0 or 1");
  const std::string nested = le(std::uint32_t{9}) + le(std::uint64_t{1});
  refused(gguf(3, 0, 1, gstr("k") + le(std::uint32_t{9}) + nested + nested + le(std::uint32_t{4}) + le(std::uint64_t{0})),
          "arrays nested deeper than 2 levels");
  refused(gguf(3, 0, 1, gstr("k") + le(std::uint32_t{9}) + le(std::uint32_t{4}) + le(std::uint64_t{1} << 40)),
          "an array's length 1099511627776 cannot fit");
  refused(gguf(3, 0, 1, gstr("general.alignment") + le(std::uint32_t{4}) + le(std::uint32_t{24})),
          "general.alignment must be a uint32 power of two, got 24");
  auto tensor = [](std::uint32_t dims, std::uint64_t extent, std::uint64_t offset) {
    std::string s = gstr("t") + le(dims);
    for (std::uint32_t d = 0; d < dims; ++d) s += le(extent);
    return s + le(std::uint32_t{0}) + le(offset) + std::string(64, '\0');
  };
  refused(gguf(3, 1, 0, tensor(5, 2, 0)), "tensor 't' has 5 dimensions, expected 1 to 4");
  refused(gguf(3, 1, 0, tensor(2, std::uint64_t{1} << 41, 0)), "tensor 't' has a dimension of 2199023255552");
  refused(gguf(3, 1, 0, tensor(1, 4, 8)), "tensor 't' starts at 8, not a multiple of 32");
  refused(gguf(3, 1, 0, tensor(1, 1000, 0)), "tensor 't' (4000 bytes at 0) lies outside the");
  const std::string two = gstr("a") + le(std::uint32_t{1}) + le(std::uint64_t{8}) + le(std::uint32_t{0}) +
                          le(std::uint64_t{0}) + gstr("b") + le(std::uint32_t{1}) + le(std::uint64_t{8}) +
                          le(std::uint32_t{0}) + le(std::uint64_t{0}) + std::string(128, '\0');
  refused(gguf(3, 2, 0, two), "two tensors overlap in the data section");
  EXPECT_PEFT_ERROR(io::read_gguf("/nonexistent/x.gguf"), "read_gguf('/nonexistent/x.gguf'): no such file");
}

}  // namespace
}  // namespace peft::test
