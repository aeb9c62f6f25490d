#!/usr/bin/env bash
# The fit's buffers counted in the memory budget: bench/memory.sh's 12-megapixel image encoded
# with --fit 20, at the defaults, and with the fit alone (--fit 20 --beam 1 --refine 1), by the
# build before and the build after; the order of the two builds alternates from round to round.
# Usage: docs/results/fit-budget/run.sh <rvq before> <rvq after> [ROUNDS] > docs/results/fit-budget/memory.txt
# The error of an archive: rvq eval --backend cpu --data A.rvq --against DIR (DIR holding the image).
set -euo pipefail
cd "$(dirname "$0")/../../.."
before=$1 after=$2 rounds=${3:-2}
for r in $(seq "$rounds"); do
  order=("$before" "$after")
  [ $((r % 2)) -eq 0 ] && order=("$after" "$before")
  for flags in "--fit 20" "" "--fit 20 --beam 1 --refine 1"; do
    for b in "${order[@]}"; do
      echo "round $r, $b:"
      RVQ=$b ENCODE_FLAGS="$flags" bench/memory.sh 1 1024 | grep '12 MP encode'
    done
  done
done
