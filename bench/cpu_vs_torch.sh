#!/usr/bin/env bash
# rvq (burn flex) against PyTorch on the same CPU and the same weights, batch by batch.
# Usage: [RUNS=5] bench/cpu_vs_torch.sh [OUT_DIR]     (default docs/results/vs-torch; RUNS timed runs
# of each measure, both sides; each reports the median and the fastest)
# Needs rvq on PATH or at $RVQ, and a Python with torch, safetensors and numpy at $PY.
# Run it on a quiet machine. rvq's flex backend uses every core; PyTorch is given as many threads.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rvq="${RVQ:-rvq}"; py="${PY:-python3}"; threads="$(nproc)"; runs="${RUNS:-5}"
out="${1:-$here/../docs/results/vs-torch}"
mkdir -p "$out"; cd "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
{ uname -srm; grep -m1 'model name' /proc/cpuinfo || true; echo "threads: $threads"; } > machine.txt
"$rvq" export -o "$tmp/model.safetensors" --reference "$tmp/reference.safetensors"
"$py" "$here/torch_reference.py" "$tmp/model.safetensors" "$tmp/reference.safetensors" \
  --check-only --json check.json > check.txt
for b in 32 64 256 1024; do
  "$rvq" bench --backend cpu --batch "$b" --runs "$runs" --beam 1 --refine 1 --fixed-depth \
    --json "rvq-b$b.json" > "rvq-b$b.md"
  "$py" "$here/torch_reference.py" "$tmp/model.safetensors" "$tmp/reference.safetensors" \
    --threads "$threads" --batch "$b" --runs "$runs" --json "torch-b$b.json" > "torch-b$b.md"
done
grep -h -E '^\| (encode|decode)' rvq-b*.md | sed 's/^/rvq /' > summary.txt
grep -h -E '^\| (encode|decode)' torch-b*.md | sed 's/^/torch /' >> summary.txt
cat check.txt summary.txt
