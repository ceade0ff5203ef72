#!/usr/bin/env bash
# Installs the Debian packages peft-cpp needs to build, test and benchmark.
# Idempotent and non-interactive: packages already present are left alone.
# Runs as root, or through sudo when it is available.
set -euo pipefail

packages=(
  cmake g++ make
  libeigen3-dev
  nlohmann-json3-dev
  libgtest-dev
  libbenchmark-dev
  libfftw3-dev  # only for the opt-in FFTW backend and its comparison benchmarks
  zlib1g-dev dataset-fashion-mnist  # the fine-tuning example and its test
)
# Extra packages for optional parts, asked for by name: e.g. `setup.sh clang`.
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all packages present"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  echo "setup: missing packages (${missing[*]}) and neither root nor sudo is available" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
