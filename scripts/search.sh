#!/usr/bin/env bash
# Measures an encoder search setting with the shipped model: beam-search encoding (`--beam N`,
# the default) or decoder-aware refinement (`--refine K`), for each value given (default
# 1 2 4 8). MSE at each depth on the first 1,000 CIFAR-10 test images and on samples/, and
# encode speed (`rvq bench`). Writes docs/model/SETTING-N-*.json and prints the table
# docs/MODEL.md quotes, each value against the first.
# Usage: RVQ=target/release/rvq scripts/search.sh [CIFAR_DIR] [VALUES] [beam|refine]
set -euo pipefail
cd "$(dirname "$0")/.."
rvq="${RVQ:-rvq}"
cifar="${1:-../shared/data/cifar-10-batches-bin}"
values="${2:-1 2 4 8}"
[ -n "${values// /}" ] || { echo "no values to measure" >&2; exit 2; }
setting="${3:-beam}"
case "$setting" in beam | refine) ;; *) echo "setting must be beam or refine" >&2; exit 2 ;; esac
# The beam is measured on its own (no refinement); refinement on top of the default beam.
other=()
[ "$setting" = beam ] && other=(--refine 1)
out=docs/model
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

echo "== machine"; uname -srm; grep -m1 'model name' /proc/cpuinfo || true; nproc
for n in $values; do
  echo "== $setting $n"
  "$rvq" eval --backend cpu --"$setting" "$n" "${other[@]}" --data "$cifar" --limit 1000 --codebooks 1,2,4,8 \
    --jpeg-qualities 50 --webp-qualities 50 --json "$out/$setting-$n-cifar.json" --force >/dev/null
  "$rvq" eval --backend cpu --"$setting" "$n" "${other[@]}" --data samples --codebooks 1,2,4,8 \
    --jpeg-qualities 50 --webp-qualities 50 --json "$out/$setting-$n-samples.json" --force >/dev/null
  rm -f "$out/$setting-$n-bench.json"
  "$rvq" bench --backend cpu --"$setting" "$n" "${other[@]}" --runs 3 --large 256x256 \
    --json "$out/$setting-$n-bench.json" >/dev/null
done

python3 - "$out" "$setting" $values <<'PY'
import json, sys
out, setting, values = sys.argv[1], sys.argv[2], sys.argv[3:]
def rvq(path):
    return {p["codebooks"]: p for p in json.load(open(path)) if p["codec"] == "rvq"}
base = {s: rvq(f"{out}/{setting}-{values[0]}-{s}.json") for s in ("cifar", "samples")}
depths = sorted(base["cifar"])
head = f"| {setting} | " + " | ".join(f"CIFAR m={m}" for m in depths) + " | " + \
    " | ".join(f"samples m={m}" for m in depths) + " | encode 32×32 img/s |"
print(head)
print("|" + "---|" * (2 + 2 * len(depths)))
for n in values:
    cells = []
    for s in ("cifar", "samples"):
        r = rvq(f"{out}/{setting}-{n}-{s}.json")
        for m in depths:
            mse, b = r[m]["mse"], base[s][m]["mse"]
            cells.append(f"{mse:.5f} ({100 * (mse / b - 1):+.1f}%)")
    bench = json.load(open(f"{out}/{setting}-{n}-bench.json"))
    enc = next(x for x in bench if x["what"].startswith("encode") and "32×32" in x["what"])
    cells.append(f"{enc['images_per_second']:.0f}")
    print(f"| {n} | " + " | ".join(cells) + " |")
PY
