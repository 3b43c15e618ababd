#!/usr/bin/env bash
# Prepares a fresh machine to build mathneuro: the C toolchain llama.cpp needs, and a
# `.cargo/config.toml` whose [env] tells llama.cpp's CMake build which SIMD extensions this CPU
# really has. Run it once; it is safe to run again (every step is a no-op when already done).
#
#   MATHNEURO_PORTABLE=1 scripts/setup.sh   # build for any x86-64 with AVX2 (no AVX-512)
#   MATHNEURO_PORTABLE=baseline ...         # no SIMD flags at all: slow, runs everywhere
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for tool in cmake clang make g++; do command -v "$tool" >/dev/null 2>&1 || need_pkgs+=("$tool"); done
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  pkgs="cmake clang libclang-dev build-essential"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing $pkgs (missing: ${need_pkgs[*]})" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "setup: missing ${need_pkgs[*]}; install these packages and run again: $pkgs" >&2
    exit 1
  fi
fi

# Which ggml CPU options to turn on. llama-cpp-sys-2 forwards every GGML_* variable to CMake;
# without them it compiles for plain x86-64 (SSE2), which is several times slower.
# `-C target-cpu=native` is avoided on purpose: on these VMs it enables AMX and crashes (SIGILL).
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
opts=()
mode=${MATHNEURO_PORTABLE:-}
if [ "$mode" != baseline ]; then
  if [ -n "$mode" ] || { has avx2 && has fma && has f16c; }; then
    opts+=(GGML_AVX GGML_AVX2 GGML_FMA GGML_F16C)
    has bmi2 && opts+=(GGML_BMI2)
  fi
  if [ -z "$mode" ] && has avx512f && has avx512bw && has avx512vl && has avx512dq; then
    opts+=(GGML_AVX512)
    has avx512_vnni && opts+=(GGML_AVX512_VNNI)
    has avx512_bf16 && opts+=(GGML_AVX512_BF16)
    has avx512vbmi && opts+=(GGML_AVX512_VBMI)
  fi
fi
mkdir -p .cargo
{
  echo "# Written by scripts/setup.sh for this machine's CPU; not committed. Re-run setup to change."
  echo "[env]"
  echo "CMAKE_BUILD_PARALLEL_LEVEL = \"$(nproc 2>/dev/null || echo 2)\""
  for o in "${opts[@]}"; do echo "$o = \"ON\""; done
} > .cargo/config.toml.new
if ! cmp -s .cargo/config.toml.new .cargo/config.toml 2>/dev/null; then
  mv .cargo/config.toml.new .cargo/config.toml
  echo "setup: ggml CPU options: ${opts[*]:-none (portable baseline)}" >&2
else
  rm .cargo/config.toml.new
fi
