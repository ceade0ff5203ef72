#!/usr/bin/env python3
"""Generate unicode_tables.hpp for the MiniLM example's WordPiece tokenizer.

The reference tokenizer (transformers' BertTokenizer, basic tokenisation in pure
Python) takes every character property from the running Python's `unicodedata`
and `str.lower()`, so the tables are generated from the same interpreter: run
this with the peer environment's Python and the tables match its Unicode
version exactly (Python 3.11: Unicode 14.0.0).

    build/peers/bin/python examples/minilm/gen_unicode_tables.py \
        > examples/minilm/unicode_tables.hpp

Tables (all sorted, searched by binary search):
  class_ranges      what BERT's basic tokenizer does with a code point:
                    control (_is_control, NUL, U+FFFD: dropped), space
                    (_is_whitespace, plus what str.split() splits on),
                    punct (_is_punctuation: ASCII 33-47, 58-64, 91-96,
                    123-126 and categories P*), mark / mark_ccc (category Mn,
                    canonical combining class zero / non-zero: dropped when
                    stripping accents)
  lower_ranges      str.lower() for code points that map to one code point,
                    as runs (lo..hi step stride) sharing one delta
  lower_multi       str.lower() mappings longer than one code point
  cased, case_ignorable   the properties str.lower() reads for the Greek
                    final sigma rule (CPython's _PyUnicode_IsCased/...Ignorable)
  nfd_entries       full canonical decomposition (NFD of one code point),
                    flattened; Hangul syllables are left to the arithmetic
  spacing_ccc       non-Mn code points with a non-zero combining class (the
                    only ones whose canonical reordering survives stripping)
"""
import ctypes
import sys
import unicodedata

MAX = 0x110000
_is_cased = ctypes.pythonapi._PyUnicode_IsCased
_is_case_ignorable = ctypes.pythonapi._PyUnicode_IsCaseIgnorable
for f in (_is_cased, _is_case_ignorable):
    f.argtypes = [ctypes.c_uint32]
    f.restype = ctypes.c_int

OTHER, SPACE, CONTROL, PUNCT, MARK, MARK_CCC = range(6)


def is_control(ch):  # transformers' _is_control
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def is_whitespace(ch):  # transformers' _is_whitespace
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_punctuation(ch):  # transformers' _is_punctuation
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def char_class(cp):
    ch = chr(cp)
    if cp == 0 or cp == 0xFFFD or is_control(ch):
        return CONTROL
    # str.split() also splits on U+2028/U+2029 (Zl/Zp), which survive cleaning.
    if is_whitespace(ch) or ch.isspace():
        return SPACE
    if is_punctuation(ch):
        return PUNCT
    if unicodedata.category(ch) == "Mn":
        return MARK_CCC if unicodedata.combining(ch) else MARK
    return OTHER


def runs(values):
    """(lo, hi, value) for maximal runs of equal value, value None omitted."""
    out, lo, prev = [], 0, values(0)
    for cp in range(1, MAX + 1):
        v = values(cp) if cp < MAX else object()
        if v != prev:
            if prev is not None and prev is not False and prev != OTHER:
                out.append((lo, cp - 1, prev))
            lo, prev = cp, v
    return out


def is_hangul_syllable(cp):
    return 0xAC00 <= cp <= 0xD7A3


def main():
    out = sys.stdout.write
    classes = runs(char_class)
    cased = runs(lambda cp: bool(_is_cased(cp)))
    ignorable = runs(lambda cp: bool(_is_case_ignorable(cp)))

    single, multi = [], []
    for cp in range(MAX):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) == 1:
            single.append((cp, ord(low) - cp))
        else:
            multi.append((cp, [ord(c) for c in low]))
    lower = []  # (lo, hi, stride, delta)
    for cp, d in single:
        if lower:
            lo, hi, stride, delta = lower[-1]
            if delta == d and (lo == hi and cp - hi in (1, 2) or cp - hi == stride):
                lower[-1] = (lo, cp, cp - hi, delta)
                continue
        lower.append((cp, cp, 1, d))

    nfd, pool = [], []
    for cp in range(MAX):
        if 0xD800 <= cp <= 0xDFFF or is_hangul_syllable(cp):
            continue
        d = unicodedata.normalize("NFD", chr(cp))
        if d != chr(cp):
            nfd.append((cp, len(pool), len(d)))
            pool.extend(ord(c) for c in d)
    assert len(pool) < 65536 and max(n for _, _, n in nfd) < 256
    spacing = [(cp, unicodedata.combining(chr(cp))) for cp in range(MAX)
               if unicodedata.combining(chr(cp)) and unicodedata.category(chr(cp)) != "Mn"]

    def array(ctype, name, items, fmt, per_line, end="};\n\n"):
        """`inline constexpr ctype name[N] = {...};`, per_line items a line."""
        out(f"inline constexpr {ctype} {name}[{len(items)}] = {{\n")
        for i in range(0, len(items), per_line):
            out("    " + " ".join(fmt(x) for x in items[i:i + per_line]) + "\n")
        out(end)

    out(f"""// GENERATED by examples/minilm/gen_unicode_tables.py from Python {sys.version.split()[0]}'s
// unicodedata (Unicode {unicodedata.unidata_version}); do not edit. Regenerate with:
//   build/peers/bin/python examples/minilm/gen_unicode_tables.py > examples/minilm/unicode_tables.hpp
// The reference tokenizer (transformers' BertTokenizer) reads the same Python's
// unicodedata and str.lower(), so the tables are exact for that interpreter.
#pragma once

#include <cstdint>

namespace peft::examples::unicode {{

inline constexpr char unidata_version[] = "{unicodedata.unidata_version}";

// What BERT's basic tokenizer does with a code point; code points in no range are `other`.
enum class char_class : std::uint8_t {{ other, space, control, punct, mark, mark_ccc }};

struct class_range {{ char32_t lo, hi; char_class cls; }};
struct plain_range {{ char32_t lo, hi; }};
// lo..hi step stride (1 or 2) lower-case to cp + delta.
struct lower_range {{ char32_t lo, hi; std::uint8_t stride; std::int32_t delta; }};
// A mapping to pool[off .. off + len).
struct pool_entry {{ char32_t cp; std::uint16_t off; std::uint8_t len; }};
struct ccc_entry {{ char32_t cp; std::uint8_t ccc; }};

""")
    names = {SPACE: "s", CONTROL: "c", PUNCT: "p", MARK: "m", MARK_CCC: "k"}
    out("namespace detail {\n"
        "inline constexpr char_class s = char_class::space, c = char_class::control, p = char_class::punct,\n"
        "                            m = char_class::mark, k = char_class::mark_ccc;\n}  // namespace detail\n\n")
    range2 = lambda r: f"{{0x{r[0]:X},0x{r[1]:X}}},"  # noqa: E731
    entry3 = lambda e: f"{{0x{e[0]:X},{e[1]},{e[2]}}},"  # noqa: E731
    hex1 = lambda c: f"0x{c:X},"  # noqa: E731
    array("class_range", "class_ranges", classes, lambda r: f"{{0x{r[0]:X},0x{r[1]:X},detail::{names[r[2]]}}},", 6)
    for name, rs in (("cased", cased), ("case_ignorable", ignorable)):
        array("plain_range", name, rs, range2, 8)
    array("lower_range", "lower_ranges", lower, lambda r: f"{{0x{r[0]:X},0x{r[1]:X},{r[2]},{r[3]}}},", 6)
    mpool, mentries = [], []
    for cp, seq in multi:
        mentries.append((cp, len(mpool), len(seq)))
        mpool.extend(seq)
    array("char32_t", "lower_multi_pool", mpool, hex1, 10, end="};\n")
    array("pool_entry", "lower_multi", mentries, entry3, 6)
    array("char32_t", "nfd_pool", pool, hex1, 10, end="};\n")
    array("pool_entry", "nfd_entries", nfd, entry3, 6)
    array("ccc_entry", "spacing_ccc", spacing, lambda e: f"{{0x{e[0]:X},{e[1]}}},", 8,
          end="};\n\n}  // namespace peft::examples::unicode\n")
    print(f"classes {len(classes)}, cased {len(cased)}, ignorable {len(ignorable)}, lower {len(lower)}, "
          f"lower_multi {len(multi)}, nfd {len(nfd)} (pool {len(pool)}), spacing_ccc {len(spacing)}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
