#!/usr/bin/env bash
# Issue 23 §4, MATH at the paper's scale: Qwen2.5-Coder-1.5B-Instruct base vs ×1.1 K = 5 % with
# MATH calibration (500 problem+solution texts of the non-test part, seed 42, with replacement)
# against the paper's general side (500 MMLU texts, seed 42; the STATS protocol-slice.sh makes),
# on the 500 MATH test problems of the seeded split (Minerva 4-shot, greedy, ≤ 256 new tokens),
# paired. Every step resumes (calibration checkpoints, the eval journal under RUNS/math500/items,
# written redacted so it holds no benchmark text); the journal is archived as
# docs/results/math-qwen1.5b/journal.tar.gz after each run so a later machine continues it (the
# STATS are not kept in git: a new machine calibrates again, ≈ 25 + 75 min on 2 cores).
#   scripts/math-pair.sh [RUNS_DIR]      (default RUNS_DIR: runs/q15)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/q15}
bin=${MATHNEURO_BIN:-target/release/mathneuro}
res=docs/results/math-qwen1.5b
m=$(models/fetch.sh qwen2.5-coder-1.5b-instruct | tail -1)
mkdir -p "$runs" "$res"
[ -e "$runs/q15-general.stats.gguf" ] || "$bin" calibrate "$m" --data mmlu --samples 500 --seed 42 --checkpoint-every 50 --resume --threads 2 -q -o "$runs/q15-general.stats.gguf"
[ -e "$runs/q15-mathcal.stats.gguf" ] || "$bin" calibrate "$m" --data math --samples 500 --seed 42 --checkpoint-every 50 --resume --threads 2 -q -o "$runs/q15-mathcal.stats.gguf"
[ -e "$runs/q15-math-edit.gguf" ] || "$bin" apply "$m" --math "$runs/q15-mathcal.stats.gguf" --general "$runs/q15-general.stats.gguf" --scale 1.1 --top-k 5 --no-modelfile -o "$runs/q15-math-edit.gguf"
want=$(cat "$res/edit.sha256" 2>/dev/null || true)
got=$(sha256sum "$runs/q15-math-edit.gguf" | cut -d' ' -f1)
if [ -n "$want" ] && [ "$want" != "$got" ]; then
  echo "math-pair: $runs/q15-math-edit.gguf has sha256 $got, the committed journal used $want" >&2
  exit 1
fi
echo "$got" > "$res/edit.sha256"
# A committed journal from another machine continues here.
if [ -e "$res/journal.tar.gz" ] && [ ! -d "$runs/math500/items" ]; then mkdir -p "$runs/math500" && tar -xzf "$res/journal.tar.gz" -C "$runs/math500"; fi
"$bin" eval "$m" --compare "$runs/q15-math-edit.gguf" --tasks math --redact-items --threads 2 --resume -q --out "$runs/math500" > "$runs/math500.stdout"
tar -czf "$res/journal.tar.gz" -C "$runs/math500" items
cp "$runs/math500/report.md" "$runs/math500/report.json" "$res/"
echo "math-pair: $res/report.md"
