#!/usr/bin/env bash
# Installs the Debian packages metagrad builds with, skipping those already present.
# Usage: tools/install-deps.sh [--bench] [--fuzz]   (--bench adds python3-torch for bench/ comparisons;
#        --fuzz adds clang-14 with its libFuzzer/sanitizer runtimes and OpenMP for tests/fuzz)
set -euo pipefail
pkgs=(g++ cmake ninja-build libdnnl-dev libeigen3-dev libfmt-dev libgtest-dev libbenchmark-dev
      libcli11-dev nlohmann-json3-dev zlib1g-dev libpng-dev graphviz gnuplot-nox dataset-fashion-mnist)
for a in "$@"; do
  case "$a" in
    --bench) pkgs+=(python3-torch) ;;
    --fuzz) pkgs+=(clang-14 libclang-rt-14-dev libfuzzer-14-dev libomp-14-dev) ;;
    *) echo "usage: tools/install-deps.sh [--bench] [--fuzz]" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
