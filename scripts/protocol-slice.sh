#!/usr/bin/env bash
# One slice of the 1.5B protocol run (issue 23; docs/results/protocol-qwen1.5b/README.md): fetches
# the model, calibrates the paper's edit (500 + 500 samples with replacement, GSM8K vs MMLU, seed
# 42; resumable checkpoints), applies ×1.1 at K = 5 %, then evaluates base and edit on GSM8K test
# questions START..END and writes the slice's protocol.json/md into docs/results/protocol-qwen1.5b/
# sSTART (per-question journals stay in RUNS, never committed). Every step resumes: rerun the same
# command after an interruption.
#   scripts/protocol-slice.sh START..END [RUNS_DIR]      (default RUNS_DIR: runs/q15)
set -euo pipefail
cd "$(dirname "$0")/.."
range=${1:?usage: scripts/protocol-slice.sh START..END [RUNS_DIR]}
runs=${2:-runs/q15}
bin=${MATHNEURO_BIN:-target/release/mathneuro}
start=${range%%..*}
out=docs/results/protocol-qwen1.5b/s$start
m=$(models/fetch.sh qwen2.5-coder-1.5b-instruct | tail -1)
mkdir -p "$runs"
for side in "math gsm8k" "general mmlu"; do
  set -- $side
  [ -e "$runs/q15-$1.stats.gguf" ] || "$bin" calibrate "$m" --data "$2" --samples 500 --seed 42 --checkpoint-every 50 --resume --threads 2 -q -o "$runs/q15-$1.stats.gguf"
done
[ -e "$runs/q15-paper.gguf" ] || "$bin" apply "$m" --math "$runs/q15-math.stats.gguf" --general "$runs/q15-general.stats.gguf" --scale 1.1 --top-k 5 --no-modelfile -o "$runs/q15-paper.gguf"
# The edit must be the same file as the other slices' (protocol-combine refuses otherwise): check
# it against the sha256 the first slice recorded before spending hours on a slice.
want=$(cat docs/results/protocol-qwen1.5b/edit.sha256 2>/dev/null || true)
got=$(sha256sum "$runs/q15-paper.gguf" | cut -d' ' -f1)
if [ -n "$want" ] && [ "$want" != "$got" ]; then
  echo "protocol-slice: $runs/q15-paper.gguf has sha256 $got, the committed slices used $want; a slice from it would not combine (different build or CPU?)" >&2
  exit 1
fi
[ -n "$want" ] || echo "$got" > docs/results/protocol-qwen1.5b/edit.sha256
"$bin" protocol "$m" "$runs/q15-paper.gguf" --gsm8k-range "$range" --general-tasks none --out "$runs/s$start" --resume --threads 2 -q
mkdir -p "$out"
cp "$runs/s$start/protocol.json" "$runs/s$start/protocol.md" "$out/"
echo "slice $range: $out/protocol.json (commit it; leave $runs out of git)"
