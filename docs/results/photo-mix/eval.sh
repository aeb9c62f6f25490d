#!/usr/bin/env bash
# A model against the shipped one, by the same binary: fixed depths on the first 1,000 CIFAR-10
# test images (issue 10's bars: MSE 0.0080 / 0.0050 / 0.0030 / 0.0014 at 1 / 2 / 4 / 8
# codebooks, default encoder) and on the development photographs, then the quality ladder on
# the development photographs as whole files against JPEG, WebP and AVIF
# (scripts/photo_compare.py). docs/MODEL.md, run 45, records a run.
#
#   RVQ=target/release/rvq PY=python-with-numpy-and-pillow-with-avif \
#     docs/results/photo-mix/eval.sh MODEL ../shared/data/cifar-10-batches-bin photos/dev OUT
#
# BASE=photo compares MODEL with the built-in photograph model instead of the default;
# NO_BASE set to anything measures MODEL alone. CODEBOOKS (default 1,2,4,8) gives MODEL's fixed depths (the
# base's stay 1,2,4,8), QUALITIES (default 30,50,70,90,100) both ladders' qualities.
#
# photos/dev: `python3 scripts/photos.py photos` (its dev/ folder). Needs bash 4.4 or later
# (empty arrays under `set -u`).
set -euo pipefail
rvq="${RVQ:-rvq}"
py="${PY:-python3}"
model="$1" cifar="$2" dev="$3" out="$4"
here="$(cd "$(dirname "$0")/../../.." && pwd)"
mkdir -p "$out"
models=("${BASE:-default}" "$model")
[ -z "${NO_BASE:-}" ] || models=("$model")
for m in "${models[@]}"; do
    tag="$(basename "$m")"
    args=()
    [ "$m" = default ] || args=(--model "$m")
    depths=1,2,4,8
    [ "$m" != "$model" ] || depths="${CODEBOOKS:-1,2,4,8}"
    "$rvq" eval --backend cpu "${args[@]}" --data "$cifar" --limit 1000 --codebooks "$depths" \
        --jpeg-qualities 50 --webp-qualities 50 --json "$out/cifar-$tag.json" > "$out/cifar-$tag.md"
    "$rvq" eval --backend cpu "${args[@]}" --data "$dev" --codebooks "$depths" \
        --jpeg-qualities 50 --webp-qualities 50 --json "$out/dev-fixed-$tag.json" > "$out/dev-fixed-$tag.md"
    RVQ="$rvq" "$py" "$here/scripts/photo_compare.py" "$dev" "${args[@]}" \
        --qualities "${QUALITIES:-30,50,70,90,100}" --json "$out/dev-ladder-$tag.json" > "$out/dev-ladder-$tag.md"
done
