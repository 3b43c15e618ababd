#!/usr/bin/env bash
# Benchmark of `mathneuro apply` against `cp` of the same file, in one run.
# usage: benches/apply.sh MODEL.gguf MATH_STATS.gguf GENERAL_STATS.gguf [apply args, e.g. --prune]
# Prints wall time and peak RSS of: cp, cp + sync (apply fsyncs its output), and apply.
# Build first: cargo build --release. Outputs go to a temporary directory beside /tmp, removed after.
set -euo pipefail
model=$1 math=$2 general=$3
shift 3
bin=${MATHNEURO_BIN:-target/release/mathneuro}
dir=$(mktemp -d /tmp/mathneuro-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cat "$model" > /dev/null # page cache warm for every contender
measure() { # label, command...
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$dir/time" "$@" > "$dir/stdout"
    read -r secs kib < "$dir/time"
    printf '%-10s %8.2f s  peak RSS %7.1f MiB\n' "$label" "$secs" "$(echo "$kib / 1024" | bc -l)"
    echo "$secs" > "$dir/$label.secs"
}
size=$(stat -L -c %s "$model")
printf 'model %s: %.1f MiB, %s cores, load %s\n' "$model" "$(echo "$size / 1048576" | bc -l)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
measure cp cp "$model" "$dir/copy.gguf"
rm -f "$dir/copy.gguf"
measure cp+sync sh -c "cp '$model' '$dir/copy.gguf' && sync '$dir/copy.gguf'"
measure apply "$bin" apply "$model" --math "$math" --general "$general" -o "$dir/out.gguf" "$@"
grep -E '^\| (selected|blocks|achieved|collateral|time) ' "$dir/stdout" || true
printf 'apply / cp = %.2f, apply / (cp+sync) = %.2f\n' \
    "$(echo "$(cat "$dir/apply.secs") / $(cat "$dir/cp.secs")" | bc -l)" \
    "$(echo "$(cat "$dir/apply.secs") / $(cat "$dir/cp+sync.secs")" | bc -l)"
