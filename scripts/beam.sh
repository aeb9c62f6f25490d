#!/usr/bin/env bash
# Measures beam-search encoding (`--beam N`) for N = 1, 2, 4, 8 with the shipped model: MSE at
# each depth on the first 1,000 CIFAR-10 test images and on samples/, and encode speed
# (`rvq bench`). Writes docs/model/beam-*.json and prints the table docs/MODEL.md quotes.
# Usage: RVQ=target/release/rvq scripts/beam.sh [CIFAR_DIR] [WIDTHS]
set -euo pipefail
cd "$(dirname "$0")/.."
rvq="${RVQ:-rvq}"
cifar="${1:-../shared/data/cifar-10-batches-bin}"
widths="${2:-1 2 4 8}"
out=docs/model
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

echo "== machine"; uname -srm; grep -m1 'model name' /proc/cpuinfo || true; nproc
for n in $widths; do
  echo "== beam $n"
  "$rvq" eval --backend cpu --beam "$n" --data "$cifar" --limit 1000 \
    --jpeg-qualities 50 --webp-qualities 50 --json "$out/beam-$n-cifar.json" --force >/dev/null
  "$rvq" eval --backend cpu --beam "$n" --data samples \
    --jpeg-qualities 50 --webp-qualities 50 --json "$out/beam-$n-samples.json" --force >/dev/null
  rm -f "$out/beam-$n-bench.json"
  "$rvq" bench --backend cpu --beam "$n" --runs 3 --large 256x256 \
    --json "$out/beam-$n-bench.json" >/dev/null
done

python3 - "$out" $widths <<'PY'
import json, sys
out, widths = sys.argv[1], sys.argv[2:]
def rvq(path):
    return {p["codebooks"]: p for p in json.load(open(path)) if p["codec"] == "rvq"}
base = {s: rvq(f"{out}/beam-1-{s}.json") for s in ("cifar", "samples")}
depths = sorted(base["cifar"])
head = "| beam | " + " | ".join(f"CIFAR m={m}" for m in depths) + " | " + \
    " | ".join(f"samples m={m}" for m in depths) + " | encode 32×32 img/s |"
print(head)
print("|" + "---|" * (2 + 2 * len(depths)))
for n in widths:
    cells = []
    for s in ("cifar", "samples"):
        r = rvq(f"{out}/beam-{n}-{s}.json")
        for m in depths:
            mse, b = r[m]["mse"], base[s][m]["mse"]
            cells.append(f"{mse:.5f} ({100 * (mse / b - 1):+.1f}%)")
    bench = json.load(open(f"{out}/beam-{n}-bench.json"))
    enc = next(x for x in bench if x["what"].startswith("encode") and "32×32" in x["what"])
    cells.append(f"{enc['images_per_second']:.0f}")
    print(f"| {n} | " + " | ".join(cells) + " |")
PY
