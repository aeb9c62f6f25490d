#!/usr/bin/env bash
# Regenerates the figures in docs/RESULTS.md and docs/BENCHMARKS.md with the shipped model.
# Usage: scripts/results.sh [CIFAR_DIR]   (default: ../shared/data/cifar-10-batches-bin)
# Needs a built rvq on PATH or at $RVQ (e.g. RVQ=target/release/rvq).
set -euo pipefail
cd "$(dirname "$0")/.."
rvq="${RVQ:-rvq}"
cifar="${1:-../shared/data/cifar-10-batches-bin}"
out=docs/results
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

echo "== machine"; uname -srm; grep -m1 'model name' /proc/cpuinfo || true; nproc

echo "== rvq eval: first 1,000 CIFAR-10 test images"
"$rvq" eval --backend cpu --data "$cifar" --limit 1000 \
  --json "$out/cifar.json" --plot "$out/cifar.png" --force | tee "$out/cifar.md"

echo "== rvq eval: the photographs in samples/"
"$rvq" eval --backend cpu --data samples \
  --json "$out/samples.json" --plot "$out/samples.png" --force | tee "$out/samples.md"

echo "== rvq bench: cpu"
rm -f "$out/bench-cpu.json"
"$rvq" bench --backend cpu --json "$out/bench-cpu.json" | tee "$out/bench-cpu.md"
