// BERT's WordPiece tokenizer, as transformers' BertTokenizer runs it for an
// uncased model (all-MiniLM-L6-v2: do_lower_case, strip_accents unset =>
// stripped, tokenize_chinese_chars, [UNK] past 100 chars, model_max_length 512).
//   basic:     clean (drop NUL, U+FFFD, category C* except \t\n\r; whitespace -> ' '),
//              space out CJK ideographs, split on whitespace, str.lower() per word
//              (with the Greek final sigma), NFD and drop category Mn, split off
//              punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and category P*)
//   wordpiece: greedy longest match first, continuations prefixed "##",
//              a word that does not split (or is over 100 code points) -> [UNK]
//   encode:    [CLS] pieces [SEP], truncated to max_length; a batch is padded
//              with [PAD] and carries an attention mask.
// Literal special tokens in the text ("[MASK]", exactly so cased) are kept whole,
// as the reference's added-token split does. Character properties come from
// unicode_tables.hpp, generated from the reference Python's unicodedata.
//
// Invalid UTF-8 (stray continuation bytes, truncated or overlong sequences,
// surrogates, code points past U+10FFFF) decodes to U+FFFD, one per maximal
// invalid subpart, which cleaning then drops, exactly as BERT drops a U+FFFD
// that Python's bytes.decode("utf-8", "replace") produces. Nothing reads past
// the input.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "unicode_tables.hpp"

namespace peft::examples {

namespace wordpiece_detail {

using unicode::char_class;

template <class Range>
inline const Range* find_range(std::span<const Range> table, char32_t cp) {
  auto it = std::upper_bound(table.begin(), table.end(), cp,
                             [](char32_t c, const Range& r) { return c < r.lo; });
  if (it == table.begin()) return nullptr;
  --it;
  return cp <= it->hi ? &*it : nullptr;
}

inline char_class classify(char32_t cp) {
  const auto* r = find_range<unicode::class_range>(unicode::class_ranges, cp);
  return r ? r->cls : char_class::other;
}

inline bool in_set(std::span<const unicode::plain_range> set, char32_t cp) {
  return find_range(set, cp) != nullptr;
}

inline const unicode::pool_entry* find_entry(std::span<const unicode::pool_entry> table, char32_t cp) {
  auto it = std::lower_bound(table.begin(), table.end(), cp,
                             [](const unicode::pool_entry& e, char32_t c) { return e.cp < c; });
  return it != table.end() && it->cp == cp ? &*it : nullptr;
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks it lists (not kana, not Hangul).
inline bool is_cjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// UTF-8 -> code points; each maximal invalid subpart becomes one U+FFFD
// (the Unicode "substitution of maximal subparts" practice, as Python does).
inline std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned b = p[i];
    if (b < 0x80) { out.push_back(b); ++i; continue; }
    int len = 0;
    char32_t cp = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) { len = 2; cp = b & 0x1F; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; cp = b & 0x0F; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; cp = b & 0x07; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
    else { out.push_back(0xFFFD); ++i; continue; }
    std::size_t j = i + 1;
    for (int k = 1; k < len; ++k, ++j) {
      if (j >= n) break;
      const unsigned c = p[j];
      if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (j - i == static_cast<std::size_t>(len)) out.push_back(cp);
    else out.push_back(0xFFFD);  // the valid prefix [i, j) is one maximal subpart
    i = j;
  }
  return out;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// CPython's handle_capital_sigma: U+03A3 lowers to final sigma after a cased letter
// (skipping case-ignorables) unless a cased letter follows (skipping them too).
inline bool final_sigma(std::u32string_view w, std::size_t i) {
  std::size_t j = i;
  while (j > 0 && in_set(unicode::case_ignorable, w[j - 1])) --j;
  if (j == 0 || !in_set(unicode::cased, w[j - 1])) return false;
  for (j = i + 1; j < w.size() && in_set(unicode::case_ignorable, w[j]); ++j) {}
  return j == w.size() || !in_set(unicode::cased, w[j]);
}

// str.lower() of a whole word.
inline std::u32string lower(std::u32string_view w) {
  std::u32string out;
  out.reserve(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    const char32_t cp = w[i];
    if (cp == 0x3A3) { out.push_back(final_sigma(w, i) ? 0x3C2 : 0x3C3); continue; }
    if (const auto* e = find_entry(unicode::lower_multi, cp)) {
      out.append(unicode::lower_multi_pool + e->off, e->len);
      continue;
    }
    const auto* r = find_range<unicode::lower_range>(unicode::lower_ranges, cp);
    if (r && (cp - r->lo) % r->stride == 0) out.push_back(static_cast<char32_t>(static_cast<std::int64_t>(cp) + r->delta));
    else out.push_back(cp);
  }
  return out;
}

inline void decompose(char32_t cp, std::u32string& out) {
  constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
  constexpr char32_t t_count = 28, n_count = 21 * 28;
  if (cp >= s_base && cp < s_base + 11172) {  // Hangul syllable: L V (T), by arithmetic
    const char32_t s = cp - s_base;
    out.push_back(l_base + s / n_count);
    out.push_back(v_base + (s % n_count) / t_count);
    if (s % t_count) out.push_back(t_base + s % t_count);
    return;
  }
  if (const auto* e = find_entry(unicode::nfd_entries, cp)) out.append(unicode::nfd_pool + e->off, e->len);
  else out.push_back(cp);
}

inline std::uint8_t spacing_ccc(char32_t cp) {
  auto it = std::lower_bound(std::begin(unicode::spacing_ccc), std::end(unicode::spacing_ccc), cp,
                             [](const unicode::ccc_entry& e, char32_t c) { return e.cp < c; });
  return it != std::end(unicode::spacing_ccc) && it->cp == cp ? it->ccc : 0;
}

// BERT's _run_strip_accents: NFD, then drop category Mn. The marks are dropped,
// but canonical reordering is kept for the few spacing marks with a non-zero
// combining class, since it can swap them within a run of combining marks.
inline std::u32string strip_accents(std::u32string_view w) {
  std::u32string nfd;
  for (char32_t cp : w) decompose(cp, nfd);
  std::u32string out;
  out.reserve(nfd.size());
  std::size_t run = 0;  // start in `out` of the current run of spacing marks
  bool in_run = false;
  auto flush = [&] {
    if (in_run) std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(run), out.end(),
                                 [](char32_t a, char32_t b) { return spacing_ccc(a) < spacing_ccc(b); });
    in_run = false;
  };
  for (char32_t cp : nfd) {
    const char_class c = classify(cp);
    if (c == char_class::mark_ccc) continue;  // dropped, and does not end a run
    if (c == char_class::mark) { flush(); continue; }
    if (spacing_ccc(cp)) {
      if (!in_run) { run = out.size(); in_run = true; }
    } else {
      flush();
    }
    out.push_back(cp);
  }
  flush();
  return out;
}

}  // namespace wordpiece_detail

struct wordpiece_options {
  bool lowercase = true;
  bool strip_accents = true;  // BERT: unset means "as lowercase"
  bool split_cjk = true;
  std::size_t max_chars_per_word = 100;
};

// One encoded text or a padded batch: ids and attention mask, row-major rows x length.
struct wordpiece_batch {
  std::size_t rows = 0, length = 0;
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> attention_mask;
};

class wordpiece_tokenizer {
 public:
  // vocab.txt: one token a line, the id is the line number (a repeated token keeps its last id).
  explicit wordpiece_tokenizer(const std::string& vocab_path, wordpiece_options options = {})
      : options_(options) {
    std::ifstream in(vocab_path, std::ios::binary);
    if (!in) throw std::runtime_error("wordpiece_tokenizer: cannot open vocabulary '" + vocab_path + "'");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    load(all);
  }

  static wordpiece_tokenizer from_string(std::string_view vocab_text, wordpiece_options options = {}) {
    wordpiece_tokenizer t(options);
    t.load(vocab_text);
    return t;
  }

  std::size_t vocab_size() const { return tokens_.size(); }
  const std::string& token(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
      throw std::out_of_range("wordpiece_tokenizer::token: expected 0 <= id < " + std::to_string(tokens_.size()) +
                              ", got " + std::to_string(id));
    return tokens_[static_cast<std::size_t>(id)];
  }
  std::int32_t id(std::string_view token) const {
    auto it = vocab_.find(token);
    return it == vocab_.end() ? unk_ : it->second;
  }
  std::int32_t cls_id() const { return cls_; }
  std::int32_t sep_id() const { return sep_; }
  std::int32_t pad_id() const { return pad_; }
  std::int32_t unk_id() const { return unk_; }

  // The word pieces' ids of `text`, without [CLS]/[SEP].
  std::vector<std::int32_t> tokenize(std::string_view text) const {
    std::vector<std::int32_t> ids;
    const std::u32string cps = wordpiece_detail::decode_utf8(text);
    std::u32string_view rest(cps);
    // Literal special tokens split the text first; the pieces between are tokenized on their own.
    while (!rest.empty()) {
      std::size_t at = rest.size(), len = 0;
      std::int32_t special = -1;
      for (const auto& [name, sid] : specials_) {
        const std::size_t pos = rest.find(name);
        if (pos < at) { at = pos; len = name.size(); special = sid; }
      }
      basic(rest.substr(0, at), ids);
      if (special < 0) break;
      ids.push_back(special);
      rest.remove_prefix(at + len);
    }
    return ids;
  }

  // [CLS] pieces [SEP], the pieces truncated so that the whole is at most max_length (>= 2).
  std::vector<std::int32_t> encode(std::string_view text, std::size_t max_length = 512) const {
    if (max_length < 2)
      throw std::invalid_argument("wordpiece_tokenizer::encode: max_length must be >= 2, got " +
                                  std::to_string(max_length));
    std::vector<std::int32_t> pieces = tokenize(text);
    if (pieces.size() > max_length - 2) pieces.resize(max_length - 2);
    std::vector<std::int32_t> out;
    out.reserve(pieces.size() + 2);
    out.push_back(cls_);
    out.insert(out.end(), pieces.begin(), pieces.end());
    out.push_back(sep_);
    return out;
  }

  // Encodes every text and pads to the longest row ([PAD], mask 0), or to
  // max_length for every row when pad_to_max_length.
  wordpiece_batch encode_batch(std::span<const std::string> texts, std::size_t max_length = 512,
                               bool pad_to_max_length = false) const {
    std::vector<std::vector<std::int32_t>> rows;
    rows.reserve(texts.size());
    std::size_t longest = pad_to_max_length ? max_length : 0;
    for (const auto& t : texts) {
      rows.push_back(encode(t, max_length));
      longest = std::max(longest, rows.back().size());
    }
    wordpiece_batch b;
    b.rows = rows.size();
    b.length = longest;
    b.ids.assign(b.rows * b.length, pad_);
    b.attention_mask.assign(b.rows * b.length, 0);
    for (std::size_t r = 0; r < b.rows; ++r) {
      std::copy(rows[r].begin(), rows[r].end(), b.ids.begin() + static_cast<std::ptrdiff_t>(r * b.length));
      std::fill_n(b.attention_mask.begin() + static_cast<std::ptrdiff_t>(r * b.length), rows[r].size(), 1);
    }
    return b;
  }

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  explicit wordpiece_tokenizer(wordpiece_options options) : options_(options) {}

  // Lines end at \n, \r\n or \r, as Python's text-mode readlines() sees them.
  void load(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
      std::size_t j = text.find_first_of("\r\n", i);
      if (j == std::string_view::npos) j = text.size();
      std::string tok(text.substr(i, j - i));
      vocab_[tok] = static_cast<std::int32_t>(tokens_.size());
      tokens_.push_back(std::move(tok));
      i = j + (j + 1 < text.size() && text[j] == '\r' && text[j + 1] == '\n' ? 2 : 1);
    }
    auto need = [&](std::string_view name) {
      auto it = vocab_.find(name);
      if (it == vocab_.end())
        throw std::runtime_error("wordpiece_tokenizer: vocabulary lacks " + std::string(name));
      return it->second;
    };
    unk_ = need("[UNK]");
    cls_ = need("[CLS]");
    sep_ = need("[SEP]");
    pad_ = need("[PAD]");
    for (std::string_view name : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      auto it = vocab_.find(name);
      if (it != vocab_.end()) specials_.emplace_back(std::u32string(name.begin(), name.end()), it->second);
    }
  }

  void basic(std::u32string_view text, std::vector<std::int32_t>& ids) const {
    using wordpiece_detail::char_class;
    using wordpiece_detail::classify;
    std::u32string word;
    auto end_word = [&] {
      if (!word.empty()) process_word(word, ids);
      word.clear();
    };
    for (char32_t cp : text) {
      const char_class c = classify(cp);
      if (c == char_class::control) continue;
      if (c == char_class::space) { end_word(); continue; }
      if (options_.split_cjk && wordpiece_detail::is_cjk(cp)) {
        end_word();
        word.push_back(cp);
        end_word();
        continue;
      }
      word.push_back(cp);
    }
    end_word();
  }

  // One whitespace-separated word: lower, strip accents, split off punctuation.
  void process_word(std::u32string_view w, std::vector<std::int32_t>& ids) const {
    using wordpiece_detail::char_class;
    std::u32string folded(w);
    if (options_.lowercase) folded = wordpiece_detail::lower(folded);
    if (options_.strip_accents) folded = wordpiece_detail::strip_accents(folded);
    std::size_t start = 0;
    for (std::size_t i = 0; i <= folded.size(); ++i) {
      const char_class c = i < folded.size() ? wordpiece_detail::classify(folded[i]) : char_class::space;
      if (c != char_class::space && c != char_class::punct) continue;
      if (i > start) wordpiece(std::u32string_view(folded).substr(start, i - start), ids);
      if (c == char_class::punct) wordpiece(std::u32string_view(folded).substr(i, 1), ids);
      start = i + 1;
    }
  }

  void wordpiece(std::u32string_view w, std::vector<std::int32_t>& ids) const {
    if (w.size() > options_.max_chars_per_word) { ids.push_back(unk_); return; }
    // Byte offset of every code point boundary, so candidates are slices of one UTF-8 string.
    std::string utf8;
    std::vector<std::size_t> at;
    at.reserve(w.size() + 1);
    for (char32_t cp : w) {
      at.push_back(utf8.size());
      wordpiece_detail::append_utf8(utf8, cp);
    }
    at.push_back(utf8.size());
    const std::size_t before = ids.size();
    std::string cont;
    std::size_t start = 0;
    while (start < w.size()) {
      std::int32_t found = -1;
      std::size_t end = w.size();
      for (; end > start; --end) {
        std::string_view piece(utf8.data() + at[start], at[end] - at[start]);
        if (start > 0) {
          cont.assign("##").append(piece);
          piece = cont;
        }
        if (auto it = vocab_.find(piece); it != vocab_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {  // the whole word becomes [UNK], as in BERT
        ids.resize(before);
        ids.push_back(unk_);
        return;
      }
      ids.push_back(found);
      start = end;
    }
  }

  wordpiece_options options_;
  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> vocab_;
  std::vector<std::string> tokens_;
  std::vector<std::pair<std::u32string, std::int32_t>> specials_;
  std::int32_t unk_ = 0, cls_ = 0, sep_ = 0, pad_ = 0;
};

}  // namespace peft::examples
