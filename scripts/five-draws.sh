#!/usr/bin/env bash
# Issue 23 §3, the paper's averaging of five calibration draws, on Qwen2.5-Coder-0.5B-Instruct:
# five paper edits (500 GSM8K train + 500 MMLU texts with replacement, seeds 42..46, ×1.1,
# K = 5 %), each evaluated with the base on the paper's 200 questions (the first 200 GSM8K test
# questions in file order; `protocol` reports each edit and their average). Every step resumes.
# The report goes to docs/results/protocol-qwen0.5b/five-draws (journals stay in RUNS).
#   scripts/five-draws.sh [RUNS_DIR]      (default RUNS_DIR: runs/q05-draws)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/q05-draws}
bin=${MATHNEURO_BIN:-target/release/mathneuro}
res=docs/results/protocol-qwen0.5b/five-draws
m=$(models/fetch.sh qwen2.5-coder-0.5b-instruct | tail -1)
mkdir -p "$runs" "$res"
edits=()
for seed in 42 43 44 45 46; do
  for side in "math gsm8k" "general mmlu"; do
    set -- $side
    [ -e "$runs/$1-$seed.stats.gguf" ] || "$bin" calibrate "$m" --data "$2" --samples 500 --seed "$seed" --checkpoint-every 100 --resume --threads 2 -q -o "$runs/$1-$seed.stats.gguf"
  done
  e=$runs/paper-seed$seed.gguf
  [ -e "$e" ] || "$bin" apply "$m" --math "$runs/math-$seed.stats.gguf" --general "$runs/general-$seed.stats.gguf" --scale 1.1 --top-k 5 --no-modelfile -o "$e"
  edits+=("$e")
done
sha256sum "${edits[@]}" | sed "s#$runs/##" > "$res/edits.sha256"
"$bin" protocol "$m" "${edits[@]}" --gsm8k-range 0..200 --general-tasks none --out "$runs/protocol" --resume --threads 2 -q
cp "$runs/protocol/protocol.json" "$runs/protocol/protocol.md" "$res/"
echo "five-draws: $res/protocol.md"
