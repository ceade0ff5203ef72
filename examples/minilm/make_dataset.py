#!/usr/bin/env python3
"""The MiniLM example's text-classification task, built offline from Debian.

Each example is a binary package's one-line description ("Real-time strategy
game of ancient warfare"); its label is the package's archive section. Four
sections whose names say what the software is for: games, graphics, science,
sound. The input is apt's own index of Debian 12 (bookworm) main for amd64,
which every Debian machine holds after `apt-get update`; nothing is downloaded.

    python3 examples/minilm/make_dataset.py OUT_DIR [--train 400] [--test 100]

writes OUT_DIR/train.tsv and OUT_DIR/test.tsv (label, section, package,
description; tab-separated, no header) and prints the index's date and hash
and the dataset's hash, which the results record: the index changes with
Debian's point releases, and a different hash means a different dataset.

Rules, so that the split measures generalisation rather than memory:
- a description that two packages share is kept once (the first package by
  name) if they share a section, and dropped if they do not;
- packages split into train and test by source package, so that the "data
  files" or "-dbg" siblings of a test package are never trained on;
- each class gets exactly --train and --test examples, the first by a hash
  of the package name (a fixed, arbitrary order).
"""

import argparse
import glob
import hashlib
import os
import re
import subprocess
import sys

CLASSES = ["games", "graphics", "science", "sound"]
TEST_SHARE = 0.2  # of the source packages, by hash
INDEX_GLOB = "/var/lib/apt/lists/*_debian_dists_bookworm_main_binary-amd64_Packages*"


def read_index(path):
    """The Packages index as text; apt keeps it compressed (lz4 here)."""
    if path.endswith((".lz4", ".gz", ".xz", ".zst")):
        return subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], check=True,
                              capture_output=True).stdout.decode("utf-8")
    with open(path, encoding="utf-8") as f:
        return f.read()


def release_date(index_path):
    """The Date: line of the InRelease file next to the index."""
    release = re.sub(r"_main_binary-amd64_Packages.*$", "_InRelease", index_path)
    try:
        with open(release, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Date:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def stanzas(text):
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # a continuation line (Tag:, long fields)
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        if "Package" in fields:
            yield fields


def order_key(name):
    return hashlib.sha256(("order:" + name).encode()).hexdigest()


def in_test(source):
    digest = hashlib.sha256(("split:" + source).encode()).digest()
    return int.from_bytes(digest[:4], "big") < TEST_SHARE * 2**32


def build(text, n_train, n_test):
    packages = {}
    for s in stanzas(text):
        if s.get("Section") in CLASSES and s.get("Description"):
            source = s.get("Source", s["Package"]).split(" ")[0]  # "name (version)"
            packages[s["Package"]] = (s["Section"], source, s["Description"].replace("\t", " "))
    by_text = {}
    for name in sorted(packages):
        by_text.setdefault(packages[name][2].lower(), []).append(name)
    kept = []
    for names in by_text.values():
        if len({packages[n][0] for n in names}) == 1:
            kept.append(names[0])
    splits = {"train": [], "test": []}
    for label, section in enumerate(CLASSES):
        names = sorted((n for n in kept if packages[n][0] == section), key=order_key)
        for split, wanted in (("train", n_train), ("test", n_test)):
            chosen = [n for n in names if in_test(packages[n][1]) == (split == "test")][:wanted]
            if len(chosen) < wanted:
                sys.exit(f"make_dataset: section '{section}' has {len(chosen)} {split} examples, expected {wanted}")
            splits[split] += [(label, section, n, packages[n][2]) for n in chosen]
    for split in splits.values():
        split.sort(key=lambda row: order_key(row[2]))  # classes interleaved
    return splits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=400, help="training examples per class")
    parser.add_argument("--test", type=int, default=100, help="test examples per class")
    parser.add_argument("--index", help="a Packages file (default: apt's bookworm main amd64 index)")
    args = parser.parse_args()
    index = args.index or next(iter(sorted(glob.glob(INDEX_GLOB))), None)
    if index is None:
        sys.exit(f"make_dataset: no apt index matches {INDEX_GLOB}; run apt-get update")
    text = read_index(index)
    splits = build(text, args.train, args.test)
    os.makedirs(args.out_dir, exist_ok=True)
    dataset = hashlib.sha256()
    for split, rows in splits.items():
        body = "".join(f"{label}\t{section}\t{name}\t{desc}\n" for label, section, name, desc in rows)
        dataset.update(body.encode())
        with open(os.path.join(args.out_dir, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write(body)
    print(f"index: {index}")
    print(f"index date: {release_date(index)}")
    print(f"index sha256: {hashlib.sha256(text.encode()).hexdigest()}")
    print(f"classes: {', '.join(CLASSES)}; train {len(splits['train'])}, test {len(splits['test'])}")
    print(f"dataset sha256: {dataset.hexdigest()}")


if __name__ == "__main__":
    main()
