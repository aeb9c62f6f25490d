#!/usr/bin/env bash
# Two builds of rvq on the same machine in the same run, alternating: greedy and default-effort
# encoding, decoding, each effort level, and (with MEMORY_TOO=1) bench/memory.sh's large
# images. For a change to the inference path: build the commit before it and the one after.
# Usage: BEFORE=path/to/old/rvq AFTER=path/to/new/rvq [PY=python-with-torch] bench/builds.sh OUT_DIR
# With PY set, bench/cpu_vs_torch.sh runs for each build too (PyTorch in the same run).
# EFFORTS="4" (say) times only those effort levels (default: 0 to 5).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"; mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
{ uname -srm; grep -m1 'model name' /proc/cpuinfo || true; echo "threads: $(nproc)"; date -u; } > "$out/machine.txt"
: > "$out/summary.txt"
rows() { grep -E '^\| (encode|decode) 1024' "$1" | sed "s/^/$2 /"; }
for round in 1 2; do
  for side in BEFORE AFTER; do
    bin="${!side}"
    "$bin" bench --backend cpu --batch 64 --runs 5 --beam 1 --refine 1 --fixed-depth > "$out/greedy-$side-$round.md"
    rows "$out/greedy-$side-$round.md" "$side greedy round $round" >> "$out/summary.txt"
    for e in ${EFFORTS:-0 1 2 3 4 5}; do
      "$bin" bench --backend cpu --batch 64 --runs 3 --effort "$e" > "$out/effort$e-$side-$round.md"
      rows "$out/effort$e-$side-$round.md" "$side effort $e round $round" | grep encode >> "$out/summary.txt"
    done
  done
done
if [ -n "${PY:-}" ]; then
  for side in BEFORE AFTER; do
    RVQ="${!side}" PY="$PY" "$here/cpu_vs_torch.sh" "$out/vs-torch-$side" > /dev/null
  done
fi
if [ -n "${MEMORY_TOO:-}" ]; then
  for side in BEFORE AFTER; do
    RVQ="${!side}" "$here/memory.sh" 2 8192 > "$out/memory-$side.txt" 2>&1
  done
fi
cat "$out/summary.txt"
