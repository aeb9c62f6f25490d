#!/bin/bash
# cifar.sh DATA EVERY... : 1,000 CIFAR-10 test images at 8 codebooks and at quality 90, with
# --fit 20 (STEPS to change it) and a decode every EVERY steps; RVQ names a build with
# every-env.patch applied. One line per setting and row, then the seconds `rvq eval` took.
set -euo pipefail
R=${RVQ:-rvq}; data=$1; shift
for e in "$@"; do
  t0=$(date +%s.%N)
  RVQ_FIT_EVERY=$e $R eval --backend cpu --data "$data" --limit 1000 --codebooks 8 --qualities 90 \
    --fit "${STEPS:-20}" --jpeg-qualities 50 --webp-qualities 50 2>/dev/null \
    | grep "| rvq" | cut -d'|' -f2-9 | sed "s/^/every $e steps ${STEPS:-20} |/"
  echo "every $e seconds $(echo "$(date +%s.%N) - $t0" | bc)"
done
