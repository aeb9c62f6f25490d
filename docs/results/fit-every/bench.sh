#!/bin/bash
# bench.sh BEFORE AFTER [ROUNDS]: two rvq binaries in turn, ROUNDS times (default 2), at the
# default effort, with --fit 20 and at effort 5: the 32×32 encode's images/s of `rvq bench
# --backend cpu --batch 64 --runs 3 --large 8x8` (median of 3 runs).
set -euo pipefail
for round in $(seq "${3:-2}"); do
  for args in "" "--fit 20" "--effort 5"; do
    for bin in "$1" "$2"; do
      # shellcheck disable=SC2086
      "$bin" bench --backend cpu --batch 64 --runs 3 --large 8x8 $args 2>/dev/null | awk -F'|' \
        -v b="$bin" -v a="$args" -v r="$round" \
        '/encode 1024/ {printf "round %s %s [%s] encode 1024 32x32 img/s %s (median s %s)\n", r, b, a, $5, $4}'
    done
  done
done
