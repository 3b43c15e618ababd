#!/usr/bin/env bash
# Issue 23 §4, MATH at the paper's scale: Qwen2.5-Coder-1.5B-Instruct base vs ×1.1 K = 5 % with
# MATH calibration (500 problem+solution texts of the non-test part, seed 42, with replacement)
# against the paper's general side (500 MMLU texts, seed 42; the STATS protocol-slice.sh makes),
# on the 500 MATH test problems of the seeded split (Minerva 4-shot, greedy, ≤ 256 new tokens),
# paired. Two halves, each resumable and each small enough for one sitting, then the pairing:
#   edit  calibrate both sides (≈ 10 + 40 min on 2 AVX-512 cores), apply, evaluate the edit alone
#         (RUNS/math500-edit); the STATS are not kept in git and differ between CPU kinds, so
#         a partial edit journal (committed at a stop as edit-run.tar.gz with edit.sha256)
#         continues only on a machine whose rebuilt edit has that sha256 (the same CPU kind:
#         Intel AVX-512 gave 32a37b4b…); a finished one is archived with its report
#   base  evaluate the unedited model alone (RUNS/math500; the model file is the same bytes on
#         every machine, so its journal, archived as base-journal.tar.gz, continues anywhere)
#   pair  `eval --compare-run` pairs the two finished halves item by item (no evaluation)
# Journals are written redacted (no benchmark text).
#   scripts/math-pair.sh [RUNS_DIR] [edit|base|pair|all]    (defaults: runs/q15, all)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/q15}
step=${2:-all}
bin=${MATHNEURO_BIN:-target/release/mathneuro}
res=docs/results/math-qwen1.5b
m=$(models/fetch.sh qwen2.5-coder-1.5b-instruct | tail -1)
mkdir -p "$runs" "$res"
eval_math() { "$bin" eval "$1" --tasks math --redact-items --threads 2 --resume -q "${@:2}"; }

edit_half() {
  if [ -e "$res/edit-run.tar.gz" ] && [ ! -d "$runs/math500-edit" ]; then
    mkdir -p "$runs/math500-edit" && tar -xzf "$res/edit-run.tar.gz" -C "$runs/math500-edit"
  fi
  if [ ! -e "$runs/math500-edit/report.json" ]; then
    [ -e "$runs/q15-general.stats.gguf" ] || "$bin" calibrate "$m" --data mmlu --samples 500 --seed 42 --checkpoint-every 50 --resume --threads 2 -q -o "$runs/q15-general.stats.gguf"
    [ -e "$runs/q15-mathcal.stats.gguf" ] || "$bin" calibrate "$m" --data math --samples 500 --seed 42 --checkpoint-every 50 --resume --threads 2 -q -o "$runs/q15-mathcal.stats.gguf"
    [ -e "$runs/q15-math-edit.gguf" ] || "$bin" apply "$m" --math "$runs/q15-mathcal.stats.gguf" --general "$runs/q15-general.stats.gguf" --scale 1.1 --top-k 5 --no-modelfile -o "$runs/q15-math-edit.gguf"
    # A partial edit journal (edit-run.tar.gz without its report) continues only with the same edit.
    got=$(sha256sum "$runs/q15-math-edit.gguf" | cut -d' ' -f1)
    if [ -e "$res/edit.sha256" ] && [ "$(cat "$res/edit.sha256")" != "$got" ]; then
      echo "math-pair: the rebuilt edit has sha256 $got; the committed partial journal was made with $(cat "$res/edit.sha256") (another CPU kind: STATS differ). Remove $res/edit-run.tar.gz, $res/edit.sha256 and $runs/math500-edit to start the edit half afresh here" >&2
      exit 1
    fi
    eval_math "$runs/q15-math-edit.gguf" --out "$runs/math500-edit" > "$runs/math500-edit.stdout"
  fi
  if [ ! -e "$res/edit-run.tar.gz" ] || ! tar -tzf "$res/edit-run.tar.gz" | grep -q report.json; then
    sha256sum "$runs/q15-math-edit.gguf" | cut -d' ' -f1 > "$res/edit.sha256"
    tar -czf "$res/edit-run.tar.gz" -C "$runs/math500-edit" items report.json report.md
  fi
}

base_half() {
  if [ -e "$res/base-journal.tar.gz" ] && [ ! -d "$runs/math500/items" ]; then
    mkdir -p "$runs/math500" && tar -xzf "$res/base-journal.tar.gz" -C "$runs/math500"
  fi
  eval_math "$m" --out "$runs/math500" > "$runs/math500-base.stdout" || { tar -czf "$res/base-journal.tar.gz" -C "$runs/math500" items; exit 1; }
  tar -czf "$res/base-journal.tar.gz" -C "$runs/math500" items
}

pair() {
  eval_math "$m" --compare-run "$runs/math500-edit" --out "$runs/math500" > "$runs/math500.stdout"
  cp "$runs/math500/report.md" "$runs/math500/report.json" "$res/"
  echo "math-pair: $res/report.md"
}

case $step in
  edit) edit_half ;;
  base) base_half ;;
  pair) pair ;;
  all) edit_half && base_half && pair ;;
  *) echo "math-pair: unknown step $step (edit, base, pair or all)" >&2; exit 2 ;;
esac
