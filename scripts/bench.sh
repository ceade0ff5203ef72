#!/usr/bin/env bash
# Builds peft-bench for this machine (-O3 -march=native) and prints the
# parameter/speed table. Arguments go to peft-bench (try --help).
# Also builds build/bench/bench/peft-bench-openblas: the same table with
# OpenBLAS doing the dense products (peft::blas), and peft-bench-onednn, with
# oneDNN's matmul under the frozen layers (peft::onednn: float32 for Linear,
# bfloat16 for LinearBF16; try --base f32,bf16), and peft-bench-gemm, the
# frozen layer's products on Eigen, OpenBLAS and oneDNN against the FMA peak,
# and peft-bench-multi, mixed batches over several adapters on one layer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh libopenblas-dev libdnnl-dev >&2
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_EXAMPLES=OFF \
  -DPEFT_BUILD_BENCHMARKS=ON -DPEFT_WITH_OPENBLAS=ON -DPEFT_WITH_ONEDNN=ON >&2
cmake --build build/bench -j "$(nproc)" >&2
cmake --build build/bench -j "$(nproc)" --target peft-bench-openblas peft-bench-onednn peft-bench-gemm peft-bench-multi >&2
./build/bench/bench/peft-bench "$@"
