#!/usr/bin/env bash
# Builds and runs the whole test suite from a fresh clone:
#   bash scripts/test.sh              tests, examples and benchmarks built, tests run
#   bash scripts/test.sh --sanitize   the same tests under AddressSanitizer + UBSan
#   bash scripts/test.sh --fuzz [S]   the libFuzzer targets (clang), each S seconds (default 60)
#   bash scripts/test.sh --mpich      peft::dist's 2-rank tests built and run against MPICH (not in CI)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fuzz" ]]; then
  seconds="${2:-60}"
  bash scripts/setup.sh clang libclang-rt-14-dev
  build=build/fuzz
  cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DPEFT_BUILD_FUZZERS=ON \
    -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_BENCHMARKS=OFF -DPEFT_BUILD_EXAMPLES=OFF -DPEFT_BUILD_TOOLS=OFF \
    -DPEFT_INSTALL=OFF
  cmake --build "$build" -j "$(nproc)"
  for target in safetensors peft_config gguf; do
    corpus="$build/corpus/$target"  # grows across runs; fuzz/seeds stays as committed
    mkdir -p "$corpus"
    echo "fuzz: $target for ${seconds}s"
    "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$build/crash_${target}_" "$corpus" "fuzz/seeds/$target"
  done
  exit 0
fi

if [[ "${1:-}" == "--mpich" ]]; then
  # Debian ranks MPICH's alternatives below Open MPI's (40 < 50), so installing
  # it leaves mpicxx/mpiexec on Open MPI; the build names MPICH's explicitly.
  bash scripts/setup.sh libmpich-dev mpich
  build=build/mpich
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPEFT_BUILD_TESTS=ON -DPEFT_BUILD_EXAMPLES=OFF \
    -DPEFT_BUILD_BENCHMARKS=OFF -DPEFT_WITH_MPI=ON -DMPI_CXX_COMPILER=/usr/bin/mpicxx.mpich \
    -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich
  cmake --build "$build" -j "$(nproc)" --target test_dist
  ctest --test-dir "$build" --output-on-failure -R '^dist_'
  exit 0
fi

# The peft::blas and peft::onednn backends' tests, and peft::dist's (Open MPI, 2 ranks).
bash scripts/setup.sh libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin

build=build/test
# -g1 (line tables) rather than -g: backtraces keep file and line, and the
# build takes ~0.7 GB of disk instead of ~4 GB (CI machines can be short of it).
options=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
         -DPEFT_BUILD_TESTS=ON -DPEFT_BUILD_EXAMPLES=ON -DPEFT_BUILD_BENCHMARKS=ON -DPEFT_WITH_FFTW=ON
         -DPEFT_WITH_OPENBLAS=ON -DPEFT_WITH_ONEDNN=ON -DPEFT_WITH_MPI=ON)
if [[ "${1:-}" == "--sanitize" ]]; then
  build=build/sanitize
  # Benchmarks and examples are not instrumented; tests are what the sanitizers check.
  # Not MPI: LeakSanitizer reports Open MPI's own allocations at exit.
  # Clang at -O0: on these templates GCC 12's front end alone takes ~3x
  # clang's whole -O0 compile (test_multi_adapted: 340 s at GCC -O2, 106 s
  # here), and the instrumented tests still run in seconds. The plain build
  # above stays on GCC, the compiler most users build with.
  bash scripts/setup.sh clang libclang-rt-14-dev
  options=(-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DPEFT_SANITIZE=ON -DPEFT_BUILD_TESTS=ON
           -DPEFT_BUILD_EXAMPLES=OFF -DPEFT_BUILD_BENCHMARKS=OFF -DPEFT_WITH_FFTW=ON -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O0")
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan_suppressions.txt"  # clang's OpenMP runtime's pool
fi

cmake -S . -B "$build" "${options[@]}"
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
