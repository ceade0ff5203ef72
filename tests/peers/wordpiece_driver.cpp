// Driver for wordpiece_vs_transformers.py: tokenizes every '\n'-separated line of
// a file (or stdin) with the MiniLM example's WordPiece tokenizer and prints one
// line of ids per input line.
//   wordpiece_driver VOCAB [FILE] [--max-length N]   (with N: [CLS] ... [SEP], truncated)
//   wordpiece_driver VOCAB FILE --batch N             (one padded batch: ids rows, then mask rows)
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "wordpiece.hpp"

namespace {

void print(const std::vector<std::int32_t>& ids, std::size_t from, std::size_t count, std::string& out) {
  for (std::size_t i = 0; i < count; ++i) {
    if (i) out.push_back(' ');
    out += std::to_string(ids[from + i]);
  }
  out.push_back('\n');
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s VOCAB [FILE] [--max-length N | --batch N]\n", argv[0]);
    return 2;
  }
  std::string file;
  std::size_t max_length = 0, batch = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--max-length" && i + 1 < argc) max_length = std::stoul(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batch = std::stoul(argv[++i]);
    else file = a;
  }
  try {
    const peft::examples::wordpiece_tokenizer tok(argv[1]);
    std::string text;
    if (file.empty()) {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      std::ifstream in(file, std::ios::binary);
      if (!in) throw std::runtime_error("cannot open " + file);
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    std::vector<std::string> lines;
    for (std::size_t i = 0;;) {  // as Python's bytes.split(b"\n"): "a\n" is "a" and ""
      const std::size_t j = text.find('\n', i);
      lines.emplace_back(text, i, j == std::string::npos ? std::string::npos : j - i);
      if (j == std::string::npos) break;
      i = j + 1;
    }
    std::string out;
    if (batch) {
      const auto b = tok.encode_batch(lines, batch);
      for (std::size_t r = 0; r < b.rows; ++r) print(b.ids, r * b.length, b.length, out);
      for (std::size_t r = 0; r < b.rows; ++r) print(b.attention_mask, r * b.length, b.length, out);
    } else {
      for (const auto& line : lines) {
        const auto ids = max_length ? tok.encode(line, max_length) : tok.tokenize(line);
        print(ids, 0, ids.size(), out);
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wordpiece_driver: %s\n", e.what());
    return 1;
  }
  return 0;
}
