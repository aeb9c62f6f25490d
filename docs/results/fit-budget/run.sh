#!/usr/bin/env bash
# The fit's buffers counted in the memory budget: bench/memory.sh's 12-megapixel image encoded
# with --fit 20 (and at the defaults) by the build before and the build after, alternating.
# Usage: docs/results/fit-budget/run.sh <rvq before> <rvq after> [ROUNDS] > docs/results/fit-budget/memory.txt
set -euo pipefail
cd "$(dirname "$0")/../../.."
before=$1 after=$2 rounds=${3:-1}
for r in $(seq "$rounds"); do
  for flags in "--fit 20" ""; do
    for b in "$before" "$after"; do
      echo "round $r, $b:"
      RVQ=$b ENCODE_FLAGS="$flags" bench/memory.sh 1 1024 | grep '12 MP encode'
    done
  done
done
