#pragma once
// IDX files (the MNIST / Fashion-MNIST format), plain or gzipped:
//   bytes 0-1  zero;  byte 2  element type (0x08 = unsigned byte);  byte 3  rank k
//   k big-endian u32 dimensions, then the elements in row-major order.
// Every header field is checked, and the element count against a limit,
// before the data is allocated; a file shorter or longer than its header says
// is an error that names the file.

#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace fmnist {

struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;
};

/// Reads an IDX file of unsigned bytes (gzipped or not).
inline IdxArray read_idx(const std::string& path, std::int64_t max_elements = std::int64_t{1} << 31) {
  using peft::detail::raise;
  const std::string who = "read_idx('" + path + "')";
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) raise(who, ": cannot open the file");
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{file};
  auto read = [&](void* dst, unsigned n) { return gzread(file, dst, n) == static_cast<int>(n); };

  unsigned char magic[4];
  if (!read(magic, 4)) raise(who, ": shorter than the 4-byte magic number");
  if (magic[0] != 0 || magic[1] != 0)
    raise(who, ": bad magic number (first two bytes must be 0, got ", int(magic[0]), ", ", int(magic[1]), ")");
  if (magic[2] != 0x08) raise(who, ": element type ", int(magic[2]), " is not unsigned byte (8)");
  if (magic[3] < 1 || magic[3] > 4) raise(who, ": rank ", int(magic[3]), " is not in [1, 4]");
  IdxArray out;
  std::int64_t count = 1;
  for (int i = 0; i < magic[3]; ++i) {
    unsigned char b[4];
    if (!read(b, 4)) raise(who, ": file ended inside the dimensions");
    const std::int64_t dim = (std::int64_t{b[0]} << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
    if (dim == 0) raise(who, ": dimension ", i, " is 0");
    if (count > max_elements / dim) raise(who, ": more than ", max_elements, " elements");
    count *= dim;
    out.dims.push_back(dim);
  }
  out.data.resize(static_cast<std::size_t>(count));
  std::size_t done = 0;
  while (done < out.data.size()) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(out.data.size() - done, 1u << 30));
    const int got = gzread(file, out.data.data() + done, chunk);
    if (got <= 0) raise(who, ": file ended after ", done, " of ", count, " elements (truncated)");
    done += static_cast<std::size_t>(got);
  }
  unsigned char extra;
  if (gzread(file, &extra, 1) != 0) raise(who, ": data continues past the ", count, " elements the header declares");
  return out;
}

/// Images as rows of pixels scaled to [0, 1] (N x rows·cols).
inline peft::Matrix<float> read_images(const std::string& path) {
  const IdxArray a = read_idx(path);
  PEFT_REQUIRE(a.dims.size() == 3, "read_images('", path, "'): expected rank 3 (N x rows x cols), got rank ",
               a.dims.size());
  const peft::Index n = a.dims[0], pixels = a.dims[1] * a.dims[2];
  peft::Matrix<float> m(n, pixels);
  for (peft::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(a.data[static_cast<std::size_t>(i)]) / 255.0f;
  return m;
}

/// Labels 0..9.
inline std::vector<int> read_labels(const std::string& path) {
  const IdxArray a = read_idx(path);
  PEFT_REQUIRE(a.dims.size() == 1, "read_labels('", path, "'): expected rank 1, got rank ", a.dims.size());
  std::vector<int> labels(a.data.begin(), a.data.end());
  for (const int l : labels) PEFT_REQUIRE(l <= 9, "read_labels('", path, "'): label ", l, " is not in 0..9");
  return labels;
}

}  // namespace fmnist
