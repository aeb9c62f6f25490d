#!/usr/bin/env bash
# What range-coding the indices saves: encodes a folder at each setting given three times,
# packed (--no-entropy), range-coded without neighbour contexts (--no-neighbours, payload
# coder 1) and with them (the default, payload coder 2), and prints the archives' sizes and
# the coded blocks.
# Usage: scripts/entropy_gain.sh DIR [SETTING ...]
#   SETTING: codebooks=M or quality=Q (default: codebooks=1 codebooks=2 codebooks=4 codebooks=8)
# Needs a built rvq on PATH or at $RVQ. Larger photographs than samples/: scripts/photos.py
# writes a development set of eight (four of them the full-size scikit-image photographs the
# samples are cut from).
set -euo pipefail
rvq="${RVQ:-rvq}"
dir="$1"
shift
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=(codebooks=1 codebooks=2 codebooks=4 codebooks=8)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "| setting | packed bytes | coder 1 bytes | change | coder 2 bytes | change | coded blocks (1 / 2) |"
echo "|---|---|---|---|---|---|---|"
for s in "${settings[@]}"; do
  flag=(--"${s%%=*}" "${s#*=}")
  for coder in 0 1 2; do
    extra=()
    [ "$coder" = 0 ] && extra=(--no-entropy)
    [ "$coder" = 1 ] && extra=(--no-neighbours)
    "$rvq" encode --backend cpu "${flag[@]}" --no-names "${extra[@]}" -o "$tmp/$coder.rvq" "$dir" 2>/dev/null
  done
  p=$(stat -c %s "$tmp/0.rvq"); c1=$(stat -c %s "$tmp/1.rvq"); c2=$(stat -c %s "$tmp/2.rvq")
  b1=$("$rvq" info --json "$tmp/1.rvq" | grep -o '"coded_blocks": [0-9]*' | grep -o '[0-9]*$')
  b2=$("$rvq" info --json "$tmp/2.rvq" | grep -o '"coded_blocks": [0-9]*' | grep -o '[0-9]*$')
  pct() { awk "BEGIN { printf \"%+.1f%%\", 100 * ($1 - $2) / $2 }"; }
  echo "| $s | $p | $c1 | $(pct "$c1" "$p") | $c2 | $(pct "$c2" "$p") | $b1 / $b2 |"
  rm -f "$tmp"/*.rvq
done
