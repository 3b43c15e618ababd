#!/usr/bin/env bash
# Issue 24's table for one model (docs/RESULTS.md, "Smaller, and still good at math"): the float
# master, math and general STATS of ≈ 20 480 tokens each, the Q3_K_M variants 1–8 at equal size
# (5: a measured-sensitivity allocation, from a journaled `sensitivity` run over every target;
# 6, 7: the same measure spent as a knapsack, with estimated or measured gains of a step up;
# 8: entry-level protection of MathNeuro's entries with variant 2's importance),
# and their KLD against the master at 10 240 tokens per set under both protocols (`kld`'s
# per-document sets, and llama-perplexity's on WikiText-2 test text). Every step is skipped when
# its output exists, so an interrupted run resumes; models go to DIR (never into git). The KLD
# reports and each variant's sha256 are copied to RESULTS (default docs/results/quantize-NAME) as
# they finish: quantizing is deterministic, so a later session that rebuilds a variant checks its
# sha256 against the committed one and measures only what is missing.
# START=vocab (the default) reads the held-out documents of `kld` and `sensitivity` as llama.cpp
# and generation prompts run the model (the start token only where the vocabulary adds one; Qwen2.5
# adds none), and writes to docs/results/quantize-NAME-vocab; START=always puts the start token
# before every document (lm-eval's rolling log-likelihood; the first 0.5B table, in
# docs/results/quantize-NAME). Use a separate DIR per START: the sensitivity files depend on it.
# MIX=Q2_K (or Q4_K_M) builds the same variants of that mix (files q2-*, kld-q2-*, sens-q2-*; default
# Q3_K_M: q3-*, kld-*, sens-q3-*).
# KINDS="kld" measures only the per-document sets (half the time; kldtext is the check against
# llama-perplexity's protocol).
#   scripts/quantize-table.sh MODEL.gguf DIR [THREADS] [RESULTS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/quantize-table.sh MODEL.gguf DIR [THREADS]}
dir=${2:?usage: scripts/quantize-table.sh MODEL.gguf DIR [THREADS]}
threads=${3:-2}
start=${START:-vocab}
mix=${MIX:-Q3_K_M}
# KLD reports of Q3_K_M keep their first names (kld-VARIANT.json); other mixes are prefixed.
case $mix in Q3_K_M) tag=q3 ;; Q2_K) tag=q2 ;; Q4_K_M) tag=q4 ;; *) echo "quantize-table: MIX=$mix: use Q3_K_M, Q2_K or Q4_K_M" >&2; exit 2 ;; esac
kp=; [ $tag = q3 ] || kp=$tag-
case $start in always) suffix= ;; vocab) suffix=-vocab ;; *) echo "quantize-table: START=$start: use vocab or always" >&2; exit 2 ;; esac
results=${4:-docs/results/quantize-$(basename "$model" .gguf)$suffix}
bin=${MATHNEURO_BIN:-target/release/mathneuro}
data=${MATHNEURO_DATA:-../shared/data}
mkdir -p "$dir" "$results"
run() { local out=$1; shift; [ -e "$out" ] || { echo "== $(date -u +%H:%M:%S) $out"; /usr/bin/time -f "$out: %e s, %M KiB" "$@"; }; }
m=$dir/master-f16.gguf
run "$m" "$bin" quantize "$model" --type F16 -q -o "$m"
# General calibration text: WikiText-2 test paragraphs from line 1480 on (the first 1 479 lines
# are what the general KLD sets score), headings dropped, ≥ 300 characters.
[ -e "$dir/wiki-calib.txt" ] || python3 -c "import sys; ls=open(sys.argv[1]).read().split('\n')[1479:]; open(sys.argv[2],'w').write('\n\n'.join(l.strip() for l in ls if len(l.strip())>=300 and not l.strip().startswith('='))+'\n')" "$data/wikitext2/wiki.test.raw.txt" "$dir/wiki-calib.txt"
[ -e "$dir/wiki-head.txt" ] || python3 -c "import sys; ls=open(sys.argv[1]).read().split('\n')[:1479]; open(sys.argv[2],'w').write('\n'.join(ls)+'\n')" "$data/wikitext2/wiki.test.raw.txt" "$dir/wiki-head.txt"
run "$dir/math.gguf" "$bin" calibrate "$model" --data gsm8k --samples 110 --seed 42 --threads "$threads" -q -o "$dir/math.gguf"
run "$dir/general.gguf" "$bin" calibrate "$model" --data "$dir/wiki-calib.txt" --samples 125 --no-replacement --seed 42 --threads "$threads" -q -o "$dir/general.gguf"
q() {
  local name=$1; shift
  run "$dir/$tag-$name.gguf" "$bin" quantize "$m" --type $mix -q --report "$dir/$tag-$name.json" -o "$dir/$tag-$name.gguf" "$@"
  local got; got=$(sha256sum "$dir/$tag-$name.gguf" | cut -d' ' -f1)
  if [ -e "$results/$tag-$name.sha256" ] && [ "$(cat "$results/$tag-$name.sha256")" != "$got" ]; then
    echo "quantize-table: $dir/$tag-$name.gguf has sha256 $got, the committed results were measured on $(cat "$results/$tag-$name.sha256"); remove $results/*-$name.json to measure it again" >&2
    exit 1
  fi
  echo "$got" > "$results/$tag-$name.sha256"
}
q 1plain --importance none
q 2general --general "$dir/general.gguf" --importance general
q 3math --math "$dir/math.gguf" --importance math
q 4mathneuro --math "$dir/math.gguf" --general "$dir/general.gguf" --importance general --allocation mathneuro --top-k 5 --promote-share 0.25
kld_of() {
  local v=$1 kind
  for kind in ${KINDS:-kld kldtext}; do
    [ -e "$results/$kind-$kp$v.json" ] && continue
    if [ $kind = kld ]; then
      run "$dir/$kind-$kp$v.json" "$bin" kld "$dir/$tag-$v.gguf" --master "$m" --tokens 10240 --calibration-draw 110:42 --start-token "$start" --threads "$threads" -q --json "$dir/$kind-$kp$v.json"
    else
      run "$dir/$kind-$kp$v.json" "$bin" kld "$dir/$tag-$v.gguf" --master "$m" --text "$dir/wiki-head.txt" --window 512 --tokens 10240 --threads "$threads" -q --json "$dir/$kind-$kp$v.json"
    fi
    cp "$dir/$kind-$kp$v.json" "$results/"
  done
}
for v in 1plain 2general 3math 4mathneuro; do kld_of $v; done
# Variant 5: every target a step down alone (general importance, as variants 2 and 4), math KLD
# on 1 024 held-out GSM8K tokens from the end of the held-out list (not the texts `kld` scores);
# journaled, so an interrupted run resumes. The files hold scores made conservative by one
# paired standard error (`--noise-floor 1`); the reports keep the raw scores.
sens=$dir/sens-$tag-down.json
[ -e "$sens" ] || { echo "== $(date -u +%H:%M:%S) $sens"; /usr/bin/time -f "$sens: %e s, %M KiB" "$bin" sensitivity "$m" --type $mix --general "$dir/general.gguf" --importance general --direction down --tokens 1024 --calibration-draw 110:42 --start-token "$start" --noise-floor 1 --threads "$threads" -q --resume --report "$dir/sens-$tag-down.report.json" -o "$sens"; }
cp "$sens" "$dir/sens-$tag-down.report.json" "$results/"
q 5sens --general "$dir/general.gguf" --importance general --allocation "sensitivity=$sens" --promote-share 0.25
kld_of 5sens
# Variant 6: the same losses spent as a knapsack (gains estimated from them); variant 7: with
# measured gains from a `--direction up` run (journaled too).
q 6knap --general "$dir/general.gguf" --importance general --allocation "knapsack=$sens"
kld_of 6knap
# Variant 6r: the same knapsack on the raw scores (the report's `score`, no noise floor), to see
# what the floor changes.
raw=$dir/sens-$tag-down.raw.json
[ -e "$raw" ] || python3 -c "import json,sys; r=json.load(open(sys.argv[1])); json.dump({p['tensor']: p['score'] for p in r['probes']}, open(sys.argv[2],'w'), indent=2, sort_keys=True)" "$dir/sens-$tag-down.report.json" "$raw"
q 6knapraw --general "$dir/general.gguf" --importance general --allocation "knapsack=$raw"
kld_of 6knapraw
up=$dir/sens-$tag-up.json
[ -e "$up" ] || { echo "== $(date -u +%H:%M:%S) $up"; /usr/bin/time -f "$up: %e s, %M KiB" "$bin" sensitivity "$m" --type $mix --general "$dir/general.gguf" --importance general --direction up --tokens 1024 --calibration-draw 110:42 --start-token "$start" --noise-floor 1 --threads "$threads" -q --resume --report "$dir/sens-$tag-up.report.json" -o "$up"; }
cp "$up" "$dir/sens-$tag-up.report.json" "$results/"
q 7knapup --general "$dir/general.gguf" --importance general --allocation "knapsack=$sens,$up"
kld_of 7knapup
# Variant 8: entry-level protection — general importance ×10 at the entries MathNeuro selects at
# K = 5 % (math vs general STATS), the stock mix; against variant 2 it is the protection alone.
q 8protect --math "$dir/math.gguf" --general "$dir/general.gguf" --importance general --protect 10 --protect-top-k 5
kld_of 8protect
echo "== $(date -u +%H:%M:%S) done: $dir"
