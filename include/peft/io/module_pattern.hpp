#pragma once
// ModulePattern: the regular expressions of adapter_config.json
// (target_modules, exclude_modules, feedforward_modules given as one string,
// and the keys of rank_pattern / alpha_pattern / block_size_pattern), matched
// against module names with the meaning Python's `re` gives them in PEFT.
//
// Why not std::regex: libstdc++'s executor recurses once per character, so a
// 50,000-character module name against ".*" overflows the stack, and any
// backtracking engine is exponential on patterns like "(a|a)*b". Here the
// pattern is compiled to a Thompson NFA and run breadth-first over the name:
// time O(|name| * |program|), memory O(|program| + |name| * lookarounds), no
// recursion while matching, and the parser's recursion is bounded by
// `max_nesting`. Lookarounds, which module patterns do use
// ("^(?!.*vision).*q_proj"), become per-position tables computed by one
// unanchored pass each (lookahead: the reversed sub-pattern run right to left).
//
// Supported: literals and escapes (\. \\ \n \t \xhh ...), `.`, classes
// ([a-z_], [^.], \d \w \s \D \W \S), groups ( ) (?: ) (?P<name> ), `|`,
// * + ? {m} {m,} {,n} {m,n} and their lazy forms (greedy and lazy accept the
// same names), anchors ^ $ \A \Z \b \B, lookahead (?= ) (?! ) and lookbehind
// (?<= ) (?<! ) of any width. Refused with peft::Error: back-references,
// inline flags, possessive and atomic forms, conditionals. Names are matched
// as bytes: `.` and negated classes take one byte, and bytes >= 0x80 count as
// word characters (\w, \b), as the letters of UTF-8 names are.

#include <algorithm>
#include <array>
#include <bitset>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <peft/core/error.hpp>

namespace peft::io {

/// A regular expression of adapter_config.json, matched against module names as
/// Python's `re` would, in time linear in the name (a Thompson NFA, no backtracking).
class ModulePattern {
 public:
  /// Nesting of groups and lookarounds the parser accepts.
  static constexpr int max_nesting = 100;
  /// NFA instructions after counted repeats are expanded ("a{1000}" is 1000).
  static constexpr std::size_t max_program = 20000;
  /// Lookarounds per pattern: each costs one pass and one table per name.
  static constexpr std::size_t max_lookarounds = 32;

  /// Compiles `pattern`; a pattern that is malformed, unsupported or too large
  /// raises peft::Error naming `who`, the pattern and the reason.
  explicit ModulePattern(std::string_view pattern, std::string who = "ModulePattern");

  /// re.fullmatch(pattern, name) is not None.
  bool full_match(std::string_view name) const { return run(name, /*whole=*/true); }
  /// re.match(pattern, name) is not None: anchored at the start, any end.
  bool match(std::string_view name) const { return run(name, /*whole=*/false); }

  const std::string& pattern() const { return pattern_; }  ///< the pattern as given
  /// Instructions of the main program (for tests of the size limit).
  std::size_t program_size() const { return programs_.back().code.size(); }

 private:
  using ByteSet = std::bitset<256>;

  enum class Assertion : std::uint8_t { Begin, End, TextEnd, WordBoundary, NotWordBoundary, Lookaround };
  enum class Look : std::uint8_t { Ahead, NotAhead, Behind, NotBehind };

  struct Node {
    enum class Kind : std::uint8_t { Empty, Bytes, Concat, Alternation, Repeat, Assert } kind = Kind::Empty;
    std::vector<int> children;
    int byte_set = -1;        // Bytes: index into sets_
    int min = 0, max = 0;     // Repeat: max < 0 is unbounded
    Assertion assertion = Assertion::Begin;
    int lookaround = -1;      // Assert/Lookaround: index into lookarounds_
  };

  struct Instruction {
    enum class Op : std::uint8_t { Bytes, Split, Jump, Assert, Match } op;
    int x = 0, y = 0;  // Bytes: set; Split: targets; Jump: target; Assert: Assertion, lookaround
  };
  struct Program {
    std::vector<Instruction> code;
  };
  struct Lookaround {
    Look kind;
    int body;     // AST node
    int program;  // index into programs_: reversed for lookaheads
  };

  class Parser;

  /// The pattern as messages quote it: long ones cut to their first 200 bytes.
  std::string shown() const { return pattern_.size() <= 200 ? pattern_ : pattern_.substr(0, 200) + "..."; }
  int add_node(Node node) {
    nodes_.push_back(std::move(node));
    return static_cast<int>(nodes_.size()) - 1;
  }
  std::size_t size_of(int node) const;
  void emit(int node, bool reversed, Program& p) const;
  int compile(int root, bool reversed);

  /// For every position of `text`: did `program` reach Match there? Forward
  /// runs consume text left to right, backward runs right to left; an
  /// unanchored run starts a thread at every position, an anchored one only at
  /// the first. `tables` holds the already computed lookaround tables.
  std::vector<char> simulate(const Program& program, std::string_view text, bool backward, bool unanchored,
                             const std::vector<std::vector<char>>& tables) const;
  bool holds(Assertion a, int look, std::string_view text, std::size_t pos,
             const std::vector<std::vector<char>>& tables) const;
  bool run(std::string_view name, bool whole) const;

  std::string pattern_;
  std::string who_;
  std::vector<Node> nodes_;
  std::vector<ByteSet> sets_;
  std::vector<Lookaround> lookarounds_;  // inner ones before the ones that contain them
  std::vector<Program> programs_;        // lookarounds' programs, then the main one
};

namespace detail {

inline bool is_word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

}  // namespace detail

/// Recursive descent over the pattern, depth bounded by max_nesting.
class ModulePattern::Parser {
 public:
  Parser(ModulePattern& owner, std::string_view text) : p_(owner), s_(text) {}

  int parse() {
    const int root = alternation(0);
    if (i_ < s_.size()) fail("unbalanced parenthesis at position ", i_);
    return root;
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    ::peft::detail::raise(p_.who_, ": '", p_.shown(), "' is not a supported regular expression (", parts..., ")");
  }

  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return s_[i_]; }
  bool eat(char c) {
    if (at_end() || s_[i_] != c) return false;
    ++i_;
    return true;
  }
  bool eat(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  int alternation(int depth) {
    if (depth > max_nesting) fail("groups nested deeper than ", max_nesting);
    Node alt;
    alt.kind = Node::Kind::Alternation;
    alt.children.push_back(concatenation(depth));
    while (eat('|')) alt.children.push_back(concatenation(depth));
    return alt.children.size() == 1 ? alt.children[0] : p_.add_node(std::move(alt));
  }

  int concatenation(int depth) {
    Node cat;
    cat.kind = Node::Kind::Concat;
    while (!at_end() && peek() != '|' && peek() != ')') cat.children.push_back(repeat(depth));
    if (cat.children.empty()) return p_.add_node(Node{});
    return cat.children.size() == 1 ? cat.children[0] : p_.add_node(std::move(cat));
  }

  /// Python's rule: `{` starts a repeat only as {m}, {m,}, {,n}, {m,n} or {,};
  /// anything else is a literal brace.
  bool counted(int& min, int& max) {
    const std::size_t start = i_;
    if (!eat('{')) return false;
    auto digits = [&](int& value) {
      const std::size_t first = i_;
      long long v = 0;
      while (!at_end() && peek() >= '0' && peek() <= '9') {
        v = v * 10 + (s_[i_++] - '0');
        if (v > static_cast<long long>(max_program)) fail("repeat count above ", max_program, " at position ", first);
      }
      value = static_cast<int>(v);
      return i_ > first;
    };
    int lo = 0, hi = -1;
    const bool has_lo = digits(lo);
    if (eat(',')) {
      if (!digits(hi)) hi = -1;
    } else {
      hi = lo;
      if (!has_lo) {
        i_ = start;
        return false;
      }
    }
    if (!eat('}')) {
      i_ = start;
      return false;
    }
    if (hi >= 0 && hi < lo) fail("min repeat greater than max repeat at position ", start);
    min = lo;
    max = hi;
    return true;
  }

  int repeat(int depth) {
    const int atom_node = atom(depth);
    int min = 0, max = 0;
    bool quantified = false;
    while (!at_end()) {
      const std::size_t here = i_;
      if (eat('*')) {
        min = 0, max = -1;
      } else if (eat('+')) {
        min = 1, max = -1;
      } else if (eat('?')) {
        min = 0, max = 1;
      } else if (!counted(min, max)) {
        break;
      }
      if (quantified) fail("multiple repeat at position ", here);
      if (bare_anchor_) fail("nothing to repeat at position ", here);  // "^*", "\\b+"; "(?:^)*" is fine
      quantified = true;
      eat('?');  // lazy: accepts the same names
      if (!at_end() && peek() == '+') fail("possessive repeats are not supported, at position ", i_);
    }
    if (!quantified) return atom_node;
    Node r;
    r.kind = Node::Kind::Repeat;
    r.children = {atom_node};
    r.min = min;
    r.max = max;
    return p_.add_node(std::move(r));
  }

  int bytes(const ByteSet& set) {
    p_.sets_.push_back(set);
    Node b;
    b.kind = Node::Kind::Bytes;
    b.byte_set = static_cast<int>(p_.sets_.size()) - 1;
    return p_.add_node(std::move(b));
  }
  int assertion(Assertion a, int look = -1) {
    bare_anchor_ = a != Assertion::Lookaround;
    Node n;
    n.kind = Node::Kind::Assert;
    n.assertion = a;
    n.lookaround = look;
    return p_.add_node(std::move(n));
  }

  static ByteSet class_set(char c) {
    ByteSet set;
    for (int b = 0; b < 256; ++b) {
      const auto u = static_cast<unsigned char>(b);
      const bool digit = u >= '0' && u <= '9';
      const bool space = u == ' ' || (u >= '\t' && u <= '\r');
      switch (c) {
        case 'd': case 'D': set[u] = digit; break;
        case 's': case 'S': set[u] = space; break;
        default: set[u] = detail::is_word_byte(u); break;
      }
    }
    if (c == 'D' || c == 'S' || c == 'W') set.flip();
    return set;
  }

  unsigned hex(std::size_t count) {
    unsigned v = 0;
    for (std::size_t k = 0; k < count; ++k) {
      if (at_end() || !std::isxdigit(static_cast<unsigned char>(peek()))) fail("bad hex escape at position ", i_);
      const char c = s_[i_++];
      v = v * 16 + static_cast<unsigned>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
  }

  /// One escaped character after `\` as a byte (classes handled by callers).
  unsigned char escaped_byte(std::size_t at) {
    const char c = s_[i_++];
    switch (c) {
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case 'a': return '\a';
      case 'x': {
        const unsigned v = hex(2);
        if (v >= 0x80) fail("non-ASCII escape \\x", v, " at position ", at);
        return static_cast<unsigned char>(v);
      }
      case '0': {
        unsigned v = 0;
        for (int k = 0; k < 2 && !at_end() && peek() >= '0' && peek() <= '7'; ++k) v = v * 8 + unsigned(s_[i_++] - '0');
        return static_cast<unsigned char>(v);
      }
      default: break;
    }
    if (c >= '1' && c <= '9') fail("back-references are not supported, at position ", at);
    if (std::isalnum(static_cast<unsigned char>(c))) fail("bad escape \\", c, " at position ", at);
    return static_cast<unsigned char>(c);
  }

  int bracket_class() {
    const std::size_t open = i_ - 1;
    ByteSet set;
    const bool negate = eat('^');
    bool first = true;
    while (true) {
      if (at_end()) fail("unterminated character set at position ", open);
      if (peek() == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      // One item: a class escape or a byte, possibly the start of a range.
      auto item = [&](bool& is_class) -> unsigned char {
        is_class = false;
        const std::size_t at = i_;
        if (!eat('\\')) return static_cast<unsigned char>(s_[i_++]);
        if (at_end()) fail("bad escape (end of pattern)");
        const char c = peek();
        if (c == 'd' || c == 'D' || c == 's' || c == 'S' || c == 'w' || c == 'W') {
          ++i_;
          set |= class_set(c);
          is_class = true;
          return 0;
        }
        if (c == 'b') {
          ++i_;
          return '\b';
        }
        return escaped_byte(at);
      };
      bool lo_class = false;
      const std::size_t lo_at = i_;
      const unsigned char lo = item(lo_class);
      if (lo_class) continue;
      if (i_ + 1 < s_.size() && peek() == '-' && s_[i_ + 1] != ']') {
        ++i_;
        bool hi_class = false;
        const unsigned char hi = item(hi_class);
        if (hi_class) fail("bad character range at position ", lo_at);
        if (hi < lo) fail("bad character range at position ", lo_at);
        for (unsigned b = lo; b <= hi; ++b) set[b] = true;
      } else {
        set[lo] = true;
      }
    }
    if (negate) set.flip();
    return bytes(set);
  }

  int group(int depth) {
    const std::size_t open = i_ - 1;
    int look = -1;
    Look kind = Look::Ahead;
    if (eat('?')) {
      if (eat(':')) {
      } else if (eat("P<")) {
        const std::size_t name = i_;
        while (!at_end() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_')) ++i_;
        if (i_ == name || !eat('>')) fail("bad group name at position ", name);
      } else if (eat('=')) {
        look = 0, kind = Look::Ahead;
      } else if (eat('!')) {
        look = 0, kind = Look::NotAhead;
      } else if (eat("<=")) {
        look = 0, kind = Look::Behind;
      } else if (eat("<!")) {
        look = 0, kind = Look::NotBehind;
      } else if (eat('#')) {
        while (!at_end() && peek() != ')') ++i_;
        if (!eat(')')) fail("missing ), unterminated comment at position ", open);
        return p_.add_node(Node{});
      } else {
        fail("the group construct at position ", open,
             " is not supported (inline flags, back-references, atomic groups and conditionals are not)");
      }
    }
    const int body = alternation(depth + 1);
    if (!eat(')')) fail("missing ), unterminated subpattern at position ", open);
    if (look < 0) return body;
    if (p_.lookarounds_.size() == max_lookarounds)
      fail("more than ", max_lookarounds, " lookarounds, at position ", open);
    p_.lookarounds_.push_back(Lookaround{kind, body, -1});
    return assertion(Assertion::Lookaround, static_cast<int>(p_.lookarounds_.size()) - 1);
  }

  int atom(int depth) {
    bare_anchor_ = false;
    const std::size_t at = i_;
    const char c = s_[i_++];
    switch (c) {
      case '(': {
        const int g = group(depth);
        bare_anchor_ = false;  // a group of anchors repeats
        return g;
      }
      case '[': return bracket_class();
      case '.': {
        ByteSet set;
        set.set();
        set['\n'] = false;
        return bytes(set);
      }
      case '^': return assertion(Assertion::Begin);
      case '$': return assertion(Assertion::End);
      case '*': case '+': case '?': fail("nothing to repeat at position ", at);
      case '{': {
        --i_;
        int lo = 0, hi = 0;
        if (counted(lo, hi)) fail("nothing to repeat at position ", at);
        ++i_;
        break;
      }
      case '\\': {
        if (at_end()) fail("bad escape (end of pattern)");
        const char e = peek();
        switch (e) {
          case 'd': case 'D': case 's': case 'S': case 'w': case 'W': ++i_; return bytes(class_set(e));
          case 'A': ++i_; return assertion(Assertion::Begin);
          case 'Z': ++i_; return assertion(Assertion::TextEnd);
          case 'b': ++i_; return assertion(Assertion::WordBoundary);
          case 'B': ++i_; return assertion(Assertion::NotWordBoundary);
          default: {
            ByteSet set;
            set[escaped_byte(at)] = true;
            return bytes(set);
          }
        }
      }
      default: break;
    }
    ByteSet set;
    set[static_cast<unsigned char>(c)] = true;
    return bytes(set);
  }

  ModulePattern& p_;
  std::string_view s_;
  std::size_t i_ = 0;
  bool bare_anchor_ = false;  // the last atom was ^ $ \A \Z \b or \B, which Python will not repeat
};

inline ModulePattern::ModulePattern(std::string_view pattern, std::string who)
    : pattern_(pattern), who_(std::move(who)) {
  const int root = Parser(*this, pattern).parse();
  for (std::size_t k = 0; k < lookarounds_.size(); ++k) {
    const Lookaround& l = lookarounds_[k];
    const bool ahead = l.kind == Look::Ahead || l.kind == Look::NotAhead;
    lookarounds_[k].program = compile(l.body, /*reversed=*/ahead);
  }
  compile(root, /*reversed=*/false);
}

inline std::size_t ModulePattern::size_of(int node) const {
  constexpr std::size_t over = max_program + 1;  // saturates: large enough to refuse
  const Node& n = nodes_[static_cast<std::size_t>(node)];
  switch (n.kind) {
    case Node::Kind::Empty: return 0;
    case Node::Kind::Bytes:
    case Node::Kind::Assert: return 1;
    case Node::Kind::Concat:
    case Node::Kind::Alternation: {
      std::size_t total = n.kind == Node::Kind::Alternation ? 2 * (n.children.size() - 1) : 0;
      for (int c : n.children) total = std::min(over, total + size_of(c));
      return total;
    }
    case Node::Kind::Repeat: {
      const std::size_t body = size_of(n.children[0]);
      if (body == 0) return 0;  // emit() skips it
      const auto min = static_cast<std::size_t>(n.min);
      const std::size_t optional = n.max < 0 ? 0 : static_cast<std::size_t>(n.max - n.min);
      const std::size_t tail = n.max < 0 ? body + 2 : 0;
      const std::size_t total = min * body + optional * (body + 1) + tail;
      return std::min(over, total);  // each factor is at most max_program: no overflow
    }
  }
  return over;
}

inline void ModulePattern::emit(int node, bool reversed, Program& p) const {
  using Op = Instruction::Op;
  auto here = [&] { return static_cast<int>(p.code.size()); };
  const Node& n = nodes_[static_cast<std::size_t>(node)];
  switch (n.kind) {
    case Node::Kind::Empty: return;
    case Node::Kind::Bytes: p.code.push_back({Op::Bytes, n.byte_set, 0}); return;
    case Node::Kind::Assert:
      p.code.push_back({Op::Assert, static_cast<int>(n.assertion), n.lookaround});
      return;
    case Node::Kind::Concat:
      if (reversed) {
        for (auto it = n.children.rbegin(); it != n.children.rend(); ++it) emit(*it, reversed, p);
      } else {
        for (int c : n.children) emit(c, reversed, p);
      }
      return;
    case Node::Kind::Alternation: {
      std::vector<std::size_t> jumps;
      for (std::size_t k = 0; k < n.children.size(); ++k) {
        const bool last = k + 1 == n.children.size();
        std::size_t split = 0;
        if (!last) {
          split = p.code.size();
          p.code.push_back({Op::Split, here() + 1, 0});
        }
        emit(n.children[k], reversed, p);
        if (!last) {
          jumps.push_back(p.code.size());
          p.code.push_back({Op::Jump, 0, 0});
          p.code[split].y = here();
        }
      }
      for (std::size_t j : jumps) p.code[j].x = here();
      return;
    }
    case Node::Kind::Repeat: {
      if (size_of(n.children[0]) == 0) return;  // "(?:a{0}){20000}": nothing to emit, however often
      for (int k = 0; k < n.min; ++k) emit(n.children[0], reversed, p);
      if (n.max < 0) {
        const int loop = here();
        p.code.push_back({Op::Split, loop + 1, 0});
        emit(n.children[0], reversed, p);
        p.code.push_back({Op::Jump, loop, 0});
        p.code[static_cast<std::size_t>(loop)].y = here();
        return;
      }
      std::vector<std::size_t> splits;
      for (int k = n.min; k < n.max; ++k) {
        splits.push_back(p.code.size());
        p.code.push_back({Op::Split, here() + 1, 0});
        emit(n.children[0], reversed, p);
      }
      for (std::size_t s : splits) p.code[s].y = here();
      return;
    }
  }
}

inline int ModulePattern::compile(int root, bool reversed) {
  const std::size_t size = size_of(root);
  if (size + 1 > max_program)
    ::peft::detail::raise(who_, ": '", shown(), "' is too large: it expands to more than ", max_program,
                          " NFA instructions (counted repeats are expanded)");
  Program p;
  p.code.reserve(size + 1);
  emit(root, reversed, p);
  p.code.push_back({Instruction::Op::Match, 0, 0});
  programs_.push_back(std::move(p));
  return static_cast<int>(programs_.size()) - 1;
}

inline bool ModulePattern::holds(Assertion a, int look, std::string_view text, std::size_t pos,
                                 const std::vector<std::vector<char>>& tables) const {
  const std::size_t n = text.size();
  auto word_at = [&](std::size_t k) { return k < n && detail::is_word_byte(static_cast<unsigned char>(text[k])); };
  const bool boundary = (pos > 0 && word_at(pos - 1)) != word_at(pos);
  switch (a) {
    case Assertion::Begin: return pos == 0;
    case Assertion::End: return pos == n || (pos + 1 == n && text[pos] == '\n');  // Python's `$`
    case Assertion::TextEnd: return pos == n;
    case Assertion::WordBoundary: return boundary;
    case Assertion::NotWordBoundary: return n > 0 && !boundary;  // Python: \B never matches ""
    case Assertion::Lookaround: return tables[static_cast<std::size_t>(look)][pos] != 0;
  }
  return false;
}

inline std::vector<char> ModulePattern::simulate(const Program& program, std::string_view text, bool backward,
                                                 bool unanchored,
                                                 const std::vector<std::vector<char>>& tables) const {
  using Op = Instruction::Op;
  const std::size_t n = text.size();
  const std::size_t m = program.code.size();
  std::vector<char> accepted(n + 1, 0);
  std::vector<int> current, next, stack;
  std::vector<std::size_t> seen(m, static_cast<std::size_t>(-1));
  current.reserve(m), next.reserve(m), stack.reserve(m);

  // Follows Split/Jump/Assert from `start` at position `pos` (an explicit stack,
  // each instruction visited once per position), collecting Bytes and Match.
  auto close = [&](int start, std::size_t pos, std::size_t step, std::vector<int>& into) {
    stack.push_back(start);
    while (!stack.empty()) {
      const int pc = stack.back();
      stack.pop_back();
      if (seen[static_cast<std::size_t>(pc)] == step) continue;
      seen[static_cast<std::size_t>(pc)] = step;
      const Instruction& in = program.code[static_cast<std::size_t>(pc)];
      switch (in.op) {
        case Op::Split: stack.push_back(in.y); stack.push_back(in.x); break;
        case Op::Jump: stack.push_back(in.x); break;
        case Op::Assert:
          if (holds(static_cast<Assertion>(in.x), in.y, text, pos, tables)) stack.push_back(pc + 1);
          break;
        case Op::Match: accepted[pos] = 1; break;
        case Op::Bytes: into.push_back(pc); break;
      }
    }
  };

  for (std::size_t step = 0; step <= n; ++step) {
    const std::size_t pos = backward ? n - step : step;
    if (step == 0 || unanchored) close(0, pos, step, current);
    if (current.empty()) {
      if (!unanchored) break;
      continue;
    }
    if (step == n) break;
    const auto byte = static_cast<unsigned char>(text[backward ? pos - 1 : pos]);
    const std::size_t next_pos = backward ? pos - 1 : pos + 1;
    next.clear();
    for (int pc : current) {
      const Instruction& in = program.code[static_cast<std::size_t>(pc)];
      if (sets_[static_cast<std::size_t>(in.x)][byte]) close(pc + 1, next_pos, step + 1, next);
    }
    std::swap(current, next);
  }
  return accepted;
}

inline bool ModulePattern::run(std::string_view name, bool whole) const {
  std::vector<std::vector<char>> tables;
  tables.reserve(lookarounds_.size());
  for (const Lookaround& l : lookarounds_) {
    const bool ahead = l.kind == Look::Ahead || l.kind == Look::NotAhead;
    std::vector<char> t = simulate(programs_[static_cast<std::size_t>(l.program)], name, /*backward=*/ahead,
                                   /*unanchored=*/true, tables);
    if (l.kind == Look::NotAhead || l.kind == Look::NotBehind)
      for (char& v : t) v = !v;
    tables.push_back(std::move(t));
  }
  const std::vector<char> accepted = simulate(programs_.back(), name, /*backward=*/false, /*unanchored=*/false, tables);
  if (whole) return accepted[name.size()] != 0;
  return std::any_of(accepted.begin(), accepted.end(), [](char v) { return v != 0; });
}

}  // namespace peft::io
