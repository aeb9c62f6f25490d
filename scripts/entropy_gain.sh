#!/usr/bin/env bash
# What range-coding the indices saves: encodes a folder of PNGs at every depth given, with
# and without --no-entropy, and prints both archives' sizes and the coded blocks.
# Usage: scripts/entropy_gain.sh DIR [DEPTHS]   (DEPTHS default "1 2 4 8")
# Needs a built rvq on PATH or at $RVQ. Larger photographs than samples/ (the full-size
# scikit-image ones the samples are cut from), with scikit-image installed:
#   python3 -c "import skimage.data as d, imageio.v3 as io; [io.imwrite(f'photos/{n}.png', getattr(d, n)()) for n in ('astronaut', 'coffee', 'chelsea', 'rocket')]"
set -euo pipefail
rvq="${RVQ:-rvq}"
dir="$1"
depths="${2:-1 2 4 8}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "| codebooks | packed bytes | coded bytes | change | coded blocks |"
echo "|---|---|---|---|---|"
for m in $depths; do
  "$rvq" encode --backend cpu --codebooks "$m" --refine 1 --no-names -o "$tmp/c.rvq" "$dir" 2>/dev/null
  "$rvq" encode --backend cpu --codebooks "$m" --refine 1 --no-names --no-entropy -o "$tmp/p.rvq" "$dir" 2>/dev/null
  c=$(stat -c %s "$tmp/c.rvq"); p=$(stat -c %s "$tmp/p.rvq")
  blocks=$("$rvq" info --json "$tmp/c.rvq" | grep -o '"coded_blocks": [0-9]*' | grep -o '[0-9]*$')
  echo "| $m | $p | $c | $(awk "BEGIN { printf \"%+.1f%%\", 100 * ($c - $p) / $p }") | $blocks |"
  rm -f "$tmp/c.rvq" "$tmp/p.rvq"
done
