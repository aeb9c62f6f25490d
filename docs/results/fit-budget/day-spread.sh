#!/usr/bin/env bash
# Two builds alternating on bench/memory.sh's 12-megapixel image (written by the Python block of
# that script, extracted here): the default encode, two rounds, the archives compared; then one
# --fit 20 encode by each of the last two builds given. Peak RSS and time from GNU time.
# Usage: docs/results/fit-budget/day-spread.sh <rvq A> <rvq B> [<rvq before the fit change> <rvq after>]
# (day-spread.txt: A = 8a91292's binary, B = c18587e's, then c18587e's and 6e05bdb's)
set -euo pipefail
cd "$(dirname "$0")/../../.."
a=$1 b=$2 before=${3:-$2} after=${4:-$2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The image: the Python block of bench/memory.sh, which writes "$work/photo.png".
eval "$(sed -n '/^python3 - "\$work\/photo.png"/,/^PY$/p' bench/memory.sh)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for _ in 1 2; do
  for side in a b; do
    r=${!side}
    /usr/bin/time -f "default $r %e s %M KB" "$r" encode --backend cpu -o "$work/$side.rvq" --force "$work/photo.png" 2>&1 | tail -1
  done
done
cmp "$work/a.rvq" "$work/b.rvq" && echo "default archives identical ($(stat -c %s "$work/b.rvq") bytes)"
for r in "$before" "$after"; do
  /usr/bin/time -f "fit20 $r %e s %M KB" "$r" encode --backend cpu --fit 20 -o "$work/fit.rvq" --force "$work/photo.png" 2>&1 | tail -1
  echo "  $(stat -c %s "$work/fit.rvq") bytes"
done
