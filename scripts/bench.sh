#!/usr/bin/env bash
# Builds peft-bench for this machine (-O3 -march=native) and prints the
# parameter/speed table. Arguments go to peft-bench (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_EXAMPLES=OFF \
  -DPEFT_BUILD_BENCHMARKS=ON >&2
cmake --build build/bench -j "$(nproc)" >&2
./build/bench/bench/peft-bench "$@"
