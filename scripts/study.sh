#!/usr/bin/env bash
# Reruns the reduced CPU study of docs/STUDY.md: the 16 models of sweeps/cpu-study.json, each
# trained for 1,200 steps of 64 images, evaluated on CIFAR-10 test images 0-999, then the
# report and figures, copied to docs/study/cpu-study/. About 90 minutes on 2 CPU cores.
# Usage: scripts/study.sh [CIFAR_DIR] [WORK_DIR]
#   CIFAR_DIR default ../shared/data/cifar-10-batches-bin; WORK_DIR (models, checkpoints,
#   results.csv; rerunning resumes it) default ../rvq-cpu-study.
# Needs a built rvq on PATH or at $RVQ (e.g. RVQ=target/release/rvq).
set -euo pipefail
cd "$(dirname "$0")/.."
rvq="${RVQ:-rvq}"
cifar="${1:-../shared/data/cifar-10-batches-bin}"
work="${2:-../rvq-cpu-study}"
resume=()
[ -f "$work/results.csv" ] && resume=(--resume)
"$rvq" sweep --backend cpu --data "$cifar" --grid sweeps/cpu-study.json --out "$work" \
  --batch-size 64 --max-steps 1200 --epochs 5 "${resume[@]}"
"$rvq" sweep report "$work"
out=docs/study/cpu-study
mkdir -p "$out/figures"
cp "$work/results.csv" "$work/report.md" "$out/"
cp "$work"/figures/*.png "$out/figures/"
