#!/usr/bin/env bash
# Behaviour fingerprint of a mathneuro binary on the default model, for refactors that must not
# change behaviour: STATS bytes, apply output bytes (keep, promote, prune), `run`'s outputs
# (STATS, model, report, its paired evaluation and its stdout) and eval scores.
# Usage: scripts/fingerprint.sh BINARY OUT_DIR   (about 3 minutes on 2 cores; compare two
# OUT_DIR/fingerprint.txt files with diff). Timing fields are left out; everything else is bytes.
set -euo pipefail
trap 'echo "failed; see $out/log.txt" >&2' ERR
bin=$(realpath "$1"); out=$2
model=$(realpath "${MATHNEURO_MODEL:-models/gemma-3-270m-q4_k_m.gguf}")
export MATHNEURO_DATA=$(realpath "${MATHNEURO_DATA:-../shared/data}")
mkdir -p "$out"; out=$(realpath "$out")
cd "$out"
rm -rf ./*.gguf ./*.svg ./*.report.json eval-* run.eval run.stdout.txt Modelfile* fingerprint.txt log.txt
common=(--samples 16 --seed 42 --max-tokens 256 --threads 2)
"$bin" calibrate "$model" --data gsm8k "${common[@]}" -o math.stats.gguf 2>>log.txt
"$bin" calibrate "$model" --data mmlu "${common[@]}" -o general.stats.gguf 2>>log.txt
sel=(--math math.stats.gguf --general general.stats.gguf --top-k 5 --no-modelfile --threads 2)
"$bin" apply "$model" "${sel[@]}" --scale 1.1 --save-mask keep.mask.gguf -o keep.gguf 2>>log.txt
"$bin" apply "$model" "${sel[@]}" --scale 1.1 --edit promote=q8_0 -o promote.gguf 2>>log.txt
"$bin" apply "$model" "${sel[@]}" --prune --method wanda -o prune.gguf 2>>log.txt
"$bin" eval "$model" --compare keep.gguf --tasks gsm8k,gsm8k_nll,mmlu,arc_easy,hellaswag,piqa,boolq \
  --limit 12 --parallel 4 --max-new-tokens 96 --threads 2 --no-progress --out eval-keep 2>>log.txt
# The whole method in one command (calibrate → select → rewrite → deliver → evaluate).
"$bin" run "$model" --samples 4 --seed 42 --max-tokens 128 --threads 2 --eval arc_easy --eval-limit 6 --no-progress -o run.gguf >run.stdout.txt 2>>log.txt
# Perplexity on one WikiText document (a document is thousands of tokens: one is enough).
"$bin" eval keep.gguf --tasks wikitext --limit 1 --threads 2 --no-progress --out eval-ppl 2>>log.txt
{
  sha256sum ./*.gguf
  # run's stdout up to its evaluation (whose scores are in run.eval/report.json; its table
  # has a time column), without the timing lines.
  sed '/^## Before \/ after/q' run.stdout.txt | grep -v -E '[0-9] s\b|seconds|tok/s|/s\)' | sed "s|$out|OUT|g"
  # Scores only: strip every key that holds a time or a rate.
  python3 - eval-keep/report.json eval-ppl/report.json keep.report.json promote.report.json prune.report.json run.report.json run.eval/report.json <<'PY'
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if not any(t in k for t in ("seconds", "wall", "per_s", "time", "elapsed", "date"))}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
for path in sys.argv[1:]:
    print(path)
    print(json.dumps(strip(json.load(open(path))), sort_keys=True, indent=1))
PY
} > fingerprint.txt
# The model's path differs between checkouts; its bytes are what matters.
sed -i "s|$model|MODEL|g" fingerprint.txt
echo "$out/fingerprint.txt"
