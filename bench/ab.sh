#!/usr/bin/env bash
# Two rvq binaries in turn, ROUNDS times: the fastest of 15 runs of `rvq bench --backend cpu
# --batch 64` each, printed as images/s (1,024 over the fastest seconds) for the 32×32 encode
# and decode. Extra arguments go to `rvq bench` (say `--large 8x8` to skip the large image,
# `--beam 1 --refine 1 --fixed-depth` for greedy encoding). docs/BENCHMARKS.md cites its output.
# Usage: bench/ab.sh BIN_A BIN_B ROUNDS [rvq bench arguments]
set -euo pipefail
a=$1; b=$2; n=$3; shift 3
for _ in $(seq "$n"); do
  for bin in "$a" "$b"; do
    "$bin" bench --backend cpu --batch 64 --runs 15 "$@" 2>/dev/null | awk -F'|' -v b="$(basename "$bin")" \
      '/encode 1024|decode 1024/ {gsub(/ /, "", $7); printf "%s %.0f  ", b, 1024 / $7} END {print ""}'
  done
done
