// The Fashion-MNIST example's pieces: the IDX reader on good and malformed
// files, and a short deterministic run per method that lowers the loss.
#include <gtest/gtest.h>

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "finetune.hpp"
#include "idx.hpp"
#include "test_util.hpp"

namespace peft::test {
namespace {

namespace fs = std::filesystem;
const std::string kData = "/usr/share/datasets/fashion-mnist";

std::string idx_bytes(std::vector<std::uint32_t> dims, std::size_t elements, unsigned char type = 0x08) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (const auto d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>(d >> shift));
  for (std::size_t i = 0; i < elements; ++i) s.push_back(static_cast<char>(i % 251));
  return s;
}

class Idx : public ::testing::Test {
 protected:
  // One directory per test: ctest runs the tests of this suite in parallel.
  fs::path dir = fs::temp_directory_path() /
                 ("peft_idx_test_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }
  std::string plain(const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return (dir / name).string();
  }
  std::string gzipped(const std::string& name, const std::string& bytes) {
    const auto path = (dir / name).string();
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return path;
  }
};

TEST_F(Idx, ReadsPlainAndGzippedFiles) {
  for (const auto& path : {plain("a.idx", idx_bytes({3, 2, 2}, 12)), gzipped("a.idx.gz", idx_bytes({3, 2, 2}, 12))}) {
    const auto a = fmnist::read_idx(path);
    EXPECT_EQ(a.dims, (std::vector<std::int64_t>{3, 2, 2}));
    ASSERT_EQ(a.data.size(), 12u);
    EXPECT_EQ(a.data[11], 11);
    const auto images = fmnist::read_images(path);
    EXPECT_EQ(images.rows(), 3);
    EXPECT_EQ(images.cols(), 4);
    EXPECT_FLOAT_EQ(images(2, 3), 11.0f / 255.0f);
  }
  EXPECT_EQ(fmnist::read_labels(plain("l.idx", idx_bytes({5}, 5))), (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST_F(Idx, RejectsMalformedFilesNamingTheProblem) {
  EXPECT_PEFT_ERROR(fmnist::read_idx((dir / "absent").string()), "cannot open the file");
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("short", std::string(2, '\0'))), "shorter than the 4-byte magic");
  std::string magic = idx_bytes({4}, 4);
  magic[0] = 0x1f;
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("magic", magic)), "bad magic number");
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("type", idx_bytes({4}, 4, 0x0d))), "element type 13 is not unsigned byte");
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("rank", idx_bytes({}, 0))), "rank 0 is not in [1, 4]");
  EXPECT_PEFT_ERROR(fmnist::read_idx(gzipped("truncated.gz", idx_bytes({10, 10}, 57))), "truncated");
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("dims", idx_bytes({10, 10}, 0).substr(0, 7))), "ended inside the dimensions");
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("long", idx_bytes({4}, 5))), "data continues past the 4 elements");
  EXPECT_PEFT_ERROR(fmnist::read_idx(plain("huge", idx_bytes({65536, 65536, 65536}, 0))), "more than");
  EXPECT_PEFT_ERROR(fmnist::read_labels(plain("label", idx_bytes({20}, 20))), "label 10 is not in 0..9");
  EXPECT_PEFT_ERROR(fmnist::read_images(plain("rank1", idx_bytes({4}, 4))), "expected rank 3");
}

TEST(FineTune, EveryMethodLowersTheTrainingLossOnRealImages) {
  ASSERT_TRUE(fs::exists(kData + "/train-images-idx3-ubyte.gz")) << "run scripts/setup.sh (dataset-fashion-mnist)";
  const auto X = fmnist::read_images(kData + "/train-images-idx3-ubyte.gz");
  const auto y = fmnist::read_labels(kData + "/train-labels-idx1-ubyte.gz");
  ASSERT_EQ(X.rows(), 60000);
  const auto data = fmnist::select_classes(X, y, 5, 5, 256);
  ASSERT_EQ(data.size(), 256);
  const auto backbone = fmnist::random_backbone(3);
  for (const auto& method : fmnist::all_methods(5)) {
    fmnist::Model model(backbone, method, 5, 11);
    fmnist::Mat dlogits;
    const double before = fmnist::cross_entropy(model.forward(data.X), data.y, 0, dlogits);
    fmnist::TrainOptions options;
    options.epochs = 4;
    options.batch = 64;
    options.lr = method.lr;
    options.seed = 13;
    const double last_epoch = fmnist::train(model, data, options);
    const double after = fmnist::cross_entropy(model.forward(data.X), data.y, 0, dlogits);
    EXPECT_LT(after, before) << method.name;
    EXPECT_TRUE(std::isfinite(last_epoch)) << method.name;
  }
}

/// Every method trains on the backbone rounded to bfloat16 (LinearBF16) or
/// quantised to int8 (LinearInt8) as it does on the float32 one: the same
/// steps end at nearly the same loss.
TEST(FineTune, RoundedBasesTrainLikeFloat32) {
  const auto X = fmnist::read_images(kData + "/train-images-idx3-ubyte.gz");
  const auto y = fmnist::read_labels(kData + "/train-labels-idx1-ubyte.gz");
  const auto data = fmnist::select_classes(X, y, 5, 5, 256);
  const auto backbone = fmnist::random_backbone(3);
  for (const auto& method : fmnist::all_methods(5)) {
    double final_loss[3] = {0, 0, 0};
    for (const auto storage : {fmnist::Base::F32, fmnist::Base::BF16, fmnist::Base::Int8}) {
      fmnist::Model model(backbone, method, 5, 11, storage);
      fmnist::TrainOptions options;
      options.epochs = 2;
      options.batch = 64;
      options.lr = method.lr;
      options.seed = 13;
      fmnist::train(model, data, options);
      fmnist::Mat dlogits;
      final_loss[static_cast<int>(storage)] = fmnist::cross_entropy(model.forward(data.X), data.y, 0, dlogits);
    }
    EXPECT_NEAR(final_loss[1], final_loss[0], 0.05 * final_loss[0] + 0.01) << method.name << ", bfloat16";
    EXPECT_NEAR(final_loss[2], final_loss[0], 0.05 * final_loss[0] + 0.01) << method.name << ", int8";
  }
}

}  // namespace
}  // namespace peft::test
