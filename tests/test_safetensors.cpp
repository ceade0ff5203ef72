// safetensors: round trips, dtype conversion, the reference header layout,
// and every malformed input rejected with a peft::Error naming the file.
#include <peft/io/safetensors.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.hpp"

namespace peft::test {
namespace {

namespace fs = std::filesystem;

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("peft_safetensors_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file with an explicit header length prefix, header text and data bytes.
  std::string write_raw(const std::string& name, std::uint64_t header_length, const std::string& header,
                        std::size_t data_bytes) const {
    std::ofstream out(path(name), std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(header_length >> (8 * i)));
    out << header << std::string(data_bytes, '\0');
    return path(name);
  }
  std::string write_header(const std::string& name, const std::string& header, std::size_t data_bytes) const {
    return write_raw(name, header.size(), header, data_bytes);
  }

  fs::path dir_;
};

TEST_F(Safetensors, RoundTripKeepsValuesShapesAndMetadata) {
  const Matrix<double> a = random_matrix<double>(3, 5, 1);
  const Matrix<float> b = random_matrix<float>(2, 4, 2);
  io::TensorMap tensors;
  tensors["a"] = io::Tensor::from(a, {}, "F64");
  tensors["b.kernel"] = io::Tensor::from(b, {2, 2, 2});
  tensors["v"] = io::Tensor::from(b.row(0), {4});
  io::write_safetensors(path("x.safetensors"), tensors, {{"format", "pt"}});
  const auto file = io::read_safetensors(path("x.safetensors"));
  ASSERT_EQ(file.size(), 3u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.at("a").dtype, "F64");
  EXPECT_EQ(file.at("a").to_matrix<double>(), a);
  EXPECT_EQ(file.at("b.kernel").shape, (std::vector<std::int64_t>{2, 2, 2}));
  EXPECT_EQ(file.at("b.kernel").to_matrix<float>().rows(), 2);  // first dimension x the rest
  EXPECT_EQ(file.at("b.kernel").to_vector<float>(), Eigen::Map<const Vector<float>>(b.data(), 8));
  EXPECT_EQ(file.at("v").to_matrix<double>().rows(), 1);
  EXPECT_EQ(file.at("v").to_vector<float>(), b.row(0).transpose());
  EXPECT_PEFT_ERROR(file.at("missing"), "Safetensors::at: no tensor 'missing' in '");
}

TEST_F(Safetensors, HeaderLayoutMatchesTheReferenceWriter) {
  // Re-writing PEFT's own file reproduces it byte for byte.
  const std::string golden = kGoldenDir + "/peft/lora_f64/adapter_model.safetensors";
  const auto file = io::read_safetensors(golden);
  io::TensorMap tensors(file.tensors().begin(), file.tensors().end());
  io::Metadata metadata(file.metadata().begin(), file.metadata().end());
  io::write_safetensors(path("copy.safetensors"), tensors, metadata);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(slurp(path("copy.safetensors")), slurp(golden));
}

TEST_F(Safetensors, ReadsHalfPrecisionExactly) {
  auto bytes = [](std::initializer_list<std::uint16_t> values) {
    std::vector<unsigned char> out;
    for (auto v : values) {
      out.push_back(static_cast<unsigned char>(v & 0xff));
      out.push_back(static_cast<unsigned char>(v >> 8));
    }
    return out;
  };
  io::TensorMap tensors;
  // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), 2^-14 (smallest normal), 0.5·2^-14, +inf, -0
  tensors["h"] = io::Tensor{"F16", {8}, bytes({0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x0200, 0x7c00, 0x8000})};
  // BF16: 1, -3, 1/128, 3.3895e38 (max)
  tensors["bh"] = io::Tensor{"BF16", {2, 2}, bytes({0x3f80, 0xc040, 0x3c00, 0x7f7f})};
  io::write_safetensors(path("half.safetensors"), tensors);
  const auto file = io::read_safetensors(path("half.safetensors"));
  const Vector<double> h = file.at("h").to_vector<double>();
  EXPECT_EQ(h[0], 1.0);
  EXPECT_EQ(h[1], -2.0);
  EXPECT_EQ(h[2], 65504.0);
  EXPECT_EQ(h[3], std::ldexp(1.0, -24));
  EXPECT_EQ(h[4], std::ldexp(1.0, -14));
  EXPECT_EQ(h[5], std::ldexp(1.0, -15));
  EXPECT_TRUE(std::isinf(h[6]) && h[6] > 0);
  EXPECT_TRUE(h[7] == 0.0 && std::signbit(h[7]));
  const Matrix<float> bh = file.at("bh").to_matrix<float>();
  EXPECT_EQ(bh(0, 0), 1.0f);
  EXPECT_EQ(bh(0, 1), -3.0f);
  EXPECT_EQ(bh(1, 0), 1.0f / 128);
  EXPECT_EQ(bh(1, 1), std::ldexp(255.0f / 128.0f, 127));
}

TEST_F(Safetensors, RejectsMalformedFiles) {
  EXPECT_PEFT_ERROR(io::read_safetensors(path("absent.safetensors")), "absent.safetensors'): cannot open the file");

  { std::ofstream(path("short")) << "abc"; }
  EXPECT_PEFT_ERROR(io::read_safetensors(path("short")), "file is 3 bytes, shorter than the 8-byte header length");

  EXPECT_PEFT_ERROR(io::read_safetensors(write_raw("past", 1000, "{}", 0)),
                    "header length 1000 runs past the end of the file (10 bytes)");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_raw("huge", ~std::uint64_t{0}, "{}", 0)), "runs past the end");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("json", "{\"a\": [1, 2", 0)), "header is not valid JSON");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("array", "[1, 2]", 0)), "header must start with '{'");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("notobj", "{\"a\": 5}", 0)),
                    "tensor 'a' must be an object with dtype, shape and data_offsets");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("nooffsets", R"({"a":{"dtype":"F32","shape":[1]}})", 4)),
                    "tensor 'a' has no 'data_offsets'");
  EXPECT_PEFT_ERROR(
      io::read_safetensors(write_header("dtype", R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4)),
      "tensor 'a': unknown dtype 'F17'");
  EXPECT_PEFT_ERROR(
      io::read_safetensors(write_header("bounds", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)),
      "data_offsets [0, 16] run past the data buffer of 8 bytes");
  EXPECT_PEFT_ERROR(
      io::read_safetensors(write_header("mismatch", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16)),
      "shape [3] of F32 needs 3 x 4 bytes but data_offsets span 16");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header(
                        "overflow", R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)),
                    "needs more than 2^64 bytes");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                                                  "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                                      12)),
                    "tensor 'b' starts at byte 4 but the previous tensor ends at 8 (overlap)");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
                    "tensor 'a' starts at byte 4 but the previous tensor ends at 0 (gap)");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("tail", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8)),
                    "tensors cover 4 bytes but the data buffer holds 8");
  EXPECT_PEFT_ERROR(
      io::read_safetensors(write_header("negative", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
      "shape entry must be a non-negative integer, got -1");
  EXPECT_PEFT_ERROR(io::read_safetensors(write_header("meta", R"({"__metadata__":{"format":1}})", 0)),
                    "__metadata__['format'] must be a string, got 1");
  const std::string truncated = path("truncated");
  fs::copy_file(kGoldenDir + "/peft/lora_f64/adapter_model.safetensors", truncated);
  fs::resize_file(truncated, fs::file_size(truncated) - 100);
  EXPECT_PEFT_ERROR(io::read_safetensors(truncated), "data_offsets [11264, 13824] run past the data buffer of 13724 bytes");
}

TEST_F(Safetensors, ConversionAndWriteErrorsAreClear) {
  const io::Tensor ints{"I64", {2}, std::vector<unsigned char>(16)};
  EXPECT_PEFT_ERROR(ints.to_matrix<double>(), "Tensor::to_matrix: dtype 'I64' is not a floating-point type");
  const io::Tensor short_data{"F32", {4}, std::vector<unsigned char>(8)};
  EXPECT_PEFT_ERROR(short_data.to_vector<float>(), "tensor of dtype 'F32' and 4 elements holds 8 bytes");
  EXPECT_PEFT_ERROR(io::write_safetensors(path("bad"), {{"t", short_data}}), "needs 16 bytes, holds 8");
  EXPECT_PEFT_ERROR(io::write_safetensors(path("bad"), {{"t", io::Tensor{"Q8", {1}, {0}}}}), "unknown dtype 'Q8'");
  EXPECT_PEFT_ERROR(io::Tensor::from(Matrix<double>::Zero(2, 3), {5}), "shape holds 5 elements but the matrix has 6");
  EXPECT_PEFT_ERROR(io::Tensor::from(Matrix<double>::Zero(2, 3), {}, "F16"), "dtype must be F32 or F64");
}

}  // namespace
}  // namespace peft::test

namespace peft::test {
namespace {

std::vector<unsigned char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

TEST(ParseSafetensors, BytesInMemoryReadLikeTheFile) {
  const std::string file = kGoldenDir + "/peft/lora_f64/adapter_model.safetensors";
  const auto bytes = file_bytes(file);
  const auto from_file = io::read_safetensors(file);
  const auto from_bytes = io::parse_safetensors(bytes, "golden");
  EXPECT_EQ(from_bytes.source(), "golden");
  ASSERT_EQ(from_bytes.size(), from_file.size());
  for (const auto& [name, tensor] : from_file) {
    EXPECT_EQ(from_bytes.at(name).shape, tensor.shape);
    EXPECT_EQ(from_bytes.at(name).data, tensor.data);
  }
  EXPECT_EQ(from_bytes.metadata(), from_file.metadata());
  // The same checks, naming the source.
  const std::span<const unsigned char> all(bytes);
  EXPECT_PEFT_ERROR(io::parse_safetensors(all.first(5), "x"), "parse_safetensors('x'): file is 5 bytes");
  EXPECT_PEFT_ERROR(io::parse_safetensors(all.first(all.size() - 100), "x"),
                    "data_offsets [11264, 13824] run past the data buffer of 13724 bytes");
  EXPECT_PEFT_ERROR(io::parse_safetensors(all.first(100), "x"), "runs past the end of the file (100 bytes)");
}

}  // namespace
}  // namespace peft::test
