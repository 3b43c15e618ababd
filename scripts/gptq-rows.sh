#!/usr/bin/env bash
# Issue 24, error-compensated rounding (`quantize --gptq`): row 2 of scripts/quantize-table.sh
# (general importance, the llama.cpp norm) against the same importance with GPTQ rounding, H
# captured on the master from (9) the same 125 WikiText-2 paragraphs as the general STATS, or
# (10) the 110 GSM8K train texts of the math STATS (seed 42; `kld --calibration-draw 110:42`
# keeps them out of the math text it scores); (11) row 10's H with row 7's allocation (the knapsack
# on the measured step-down and step-up losses, sens-q3-{down,up}.json in SENS, by default the
# results' parent: the table's own files). Rows 9 and 10 keep the stock types and bytes per
# tensor, row 11 row 7's types at the stock size; KLD paired
# against row 2 on the same 10 240 tokens per set (`kld --against`). Steps whose output exists
# are skipped; models go to DIR (never into git), reports and sha256 to RESULTS.
# ROWS picks the rows (default 10 and 9); NO_KLD=1 skips the KLD pairs; ACC=N adds a GSM8K pair.
#   scripts/gptq-rows.sh MODEL.gguf DIR [THREADS] [RESULTS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/gptq-rows.sh MODEL.gguf DIR [THREADS] [RESULTS]}
dir=${2:?usage: scripts/gptq-rows.sh MODEL.gguf DIR [THREADS] [RESULTS]}
threads=${3:-2}
results=${4:-docs/results/quantize-$(basename "$model" .gguf)-vocab/gptq}
bin=${MATHNEURO_BIN:-target/release/mathneuro}
data=${MATHNEURO_DATA:-../shared/data}
mix=${MIX:-Q3_K_M}
sens=${SENS:-$(dirname "$results")}
mkdir -p "$dir" "$results"
run() { local out=$1; shift; [ -e "$out" ] || { echo "== $(date -u +%H:%M:%S) $out"; /usr/bin/time -f "$out: %e s, %M KiB" "$@"; }; }
m=$dir/master-f16.gguf
run "$m" "$bin" quantize "$model" --type F16 -q -o "$m"
[ -e "$dir/wiki-calib.txt" ] || python3 -c "import sys; ls=open(sys.argv[1]).read().split('\n')[1479:]; open(sys.argv[2],'w').write('\n\n'.join(l.strip() for l in ls if len(l.strip())>=300 and not l.strip().startswith('='))+'\n')" "$data/wikitext2/wiki.test.raw.txt" "$dir/wiki-calib.txt"
run "$dir/general.gguf" "$bin" calibrate "$model" --data "$dir/wiki-calib.txt" --samples 125 --no-replacement --seed 42 --threads "$threads" -q -o "$dir/general.gguf"
q() {
  local name=$1; shift
  run "$dir/$name.gguf" "$bin" quantize "$m" --type "$mix" --general "$dir/general.gguf" --importance general -q --threads "$threads" --report "$dir/$name.json" -o "$dir/$name.gguf" "$@"
  sha256sum "$dir/$name.gguf" | cut -d' ' -f1 > "$results/$name.sha256"
  cp "$dir/$name.json" "$results/"
}
# ACC=N: GSM8K 8-shot CoT on N seeded test questions, the row paired against row 2 (redacted
# journal; one archived at an earlier stop, acc-gsm8k-ROW-journal.tar.gz, is continued — valid
# only where the rebuilt rows have the committed sha256, i.e. the same CPU kind).
acc_pair() {
  local a=$dir/acc-gsm8k-$1 j=$results/acc-gsm8k-$1-journal.tar.gz
  if [ ! -d "$a/items" ] && [ -e "$j" ]; then mkdir -p "$a" && tar -xzf "$j" -C "$a"; fi
  echo "== $(date -u +%H:%M:%S) $a"
  local rc=0
  "$bin" eval "$dir/2general.gguf" --compare "$dir/$1.gguf" --tasks gsm8k --limit "$ACC" --threads "$threads" --resume --redact-items -q --out "$a" > "$a.stdout" || rc=$?
  tar -czf "$j" -C "$a" items
  [ "$rc" -eq 0 ] || return "$rc"
  mkdir -p "$results/acc-gsm8k-$1"
  cp "$a/report.md" "$a/report.json" "$a/diff.svg" "$results/acc-gsm8k-$1/"
}
q 2general
for v in ${ROWS:-10gptq-math 9gptq-general}; do
  case $v in
    9gptq-general) q $v --gptq "$dir/wiki-calib.txt" --gptq-samples 125 --gptq-no-replacement --gptq-seed 42 ;;
    10gptq-math) q $v --gptq gsm8k --gptq-samples 110 --gptq-seed 42 ;;
    11gptq-knap) q $v --gptq gsm8k --gptq-samples 110 --gptq-seed 42 --allocation "knapsack=$sens/sens-q3-down.json,$sens/sens-q3-up.json" ;;
    *) echo "gptq-rows: unknown row $v" >&2; exit 2 ;;
  esac
  if [ -z "${NO_KLD:-}" ]; then
    run "$dir/pair-$v.json" "$bin" kld "$dir/$v.gguf" --master "$m" --against "$dir/2general.gguf" --tokens 10240 --calibration-draw 110:42 --start-token vocab --threads "$threads" -q --json "$dir/pair-$v.json"
    cp "$dir/pair-$v.json" "$results/"
  fi
  if [ -n "${ACC:-}" ]; then acc_pair "$v"; fi
done
