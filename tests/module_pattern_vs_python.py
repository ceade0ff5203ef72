#!/usr/bin/env python3
"""Random module patterns and names, matched by CPython's re and by
peft::io::ModulePattern (through module_pattern_driver): every result must
agree, and every pattern Python compiles must compile here unless it uses a
construct we refuse (possessive repeats, atomic groups).

usage: module_pattern_vs_python.py DRIVER [SEED] [PATTERNS]"""
import random
import re
import subprocess
import sys

ATOMS = ["a", "b", ".", r"\.", "[ab]", "[^a]", r"\d", r"\w", r"\W", r"\s", "_", "1", "[a-c.]", r"[\w.]",
         r"\b", r"\B", "^", "$", r"\Z", r"\x61"]
REPEATS = ["*", "+", "?", "{2}", "{1,3}", "{,2}", "{2,}", "*?", "+?", "??", "{1,2}?"]


def pattern(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.35:
        return rng.choice(ATOMS)
    if r < 0.55:
        return pattern(rng, depth + 1) + pattern(rng, depth + 1)
    if r < 0.65:
        return "(?:" + pattern(rng, depth + 1) + "|" + pattern(rng, depth + 1) + ")"
    if r < 0.72:
        return "(" + pattern(rng, depth + 1) + ")" + rng.choice(REPEATS)
    if r < 0.78:
        return "(?=" + pattern(rng, depth + 1) + ")"
    if r < 0.84:
        return "(?!" + pattern(rng, depth + 1) + ")"
    if r < 0.90:
        return "(?<=" + rng.choice(["a", "b", r"\.", "ab", "a."]) + ")"
    if r < 0.95:
        return "(?<!" + rng.choice(["a", "b", r"\.", "ab"]) + ")"
    return "(?:" + pattern(rng, depth + 1) + ")" + rng.choice(REPEATS)


def main():
    driver = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    rng = random.Random(seed)
    cases = []
    while len(cases) < 5 * count:
        p = pattern(rng)
        try:
            compiled = re.compile(p)
        except re.error:
            continue
        for _ in range(5):
            name = "".join(rng.choice("ab.1_ ") for _ in range(rng.randint(0, 8)))
            cases.append((p, name, compiled))
    text = "".join(f"{p}\t{n}\n" for p, n, _ in cases)
    out = subprocess.run([driver], input=text, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == len(cases), f"driver answered {len(out)} lines for {len(cases)} cases"
    bad = 0
    for (p, n, compiled), got in zip(cases, out):
        expected = f"{int(compiled.fullmatch(n) is not None)}{int(compiled.match(n) is not None)}"
        if got != expected:
            bad += 1
            if bad <= 20:
                print(f"MISMATCH pattern {p!r} name {n!r}: ours {got}, Python {expected}")
    print(f"{len(cases)} (pattern, name) pairs from {count} patterns, seed {seed}: {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
