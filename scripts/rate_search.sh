#!/usr/bin/env bash
# Rate search in the latent space against decoding (`--rate-search latent|decoded`): the
# quality ladder of each on the samples and on the first N CIFAR-10 test images (rvq eval),
# PSNR of each at equal bits (the latent ladder interpolated at the decoded ladder's bits per
# pixel), and encode throughput (rvq bench). docs/BENCHMARKS.md records a run.
#
#   RVQ=target/release/rvq scripts/rate_search.sh ../shared/data/cifar-10-batches-bin [N]
set -euo pipefail
rvq="${RVQ:-rvq}"
cifar="$1"
n="${2:-1000}"
out="$(mktemp -d)"
q=10,30,50,70,90
for search in decoded latent; do
  for set in samples cifar; do
    data=samples; extra=()
    if [ "$set" = cifar ]; then data="$cifar"; extra=(--limit "$n"); fi
    start=$(date +%s.%N)
    "$rvq" eval --backend cpu --data "$data" "${extra[@]}" --codebooks 8 --qualities "$q" \
      --jpeg-qualities 50 --webp-qualities 50 --rate-search "$search" --json "$out/$set-$search.json" >/dev/null
    echo "eval $set $search: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def ladder(path):
    pts = [p for p in json.load(open(path)) if p["codec"] == "rvq" and p["quality"] is not None]
    return sorted((p["file_bits_per_pixel"], p["psnr"], p["quality"]) for p in pts)
for s in ("samples", "cifar"):
    dec, lat = ladder(f"{out}/{s}-decoded.json"), ladder(f"{out}/{s}-latent.json")
    print(f"{s}: quality, decoded bpp/dB, latent bpp/dB, latent dB at the decoded bpp (difference)")
    for (b, p, q) in dec:
        lb, lp, _ = next(x for x in lat if x[2] == q)
        # Latent ladder's PSNR at bpp b, linear between its neighbouring points.
        below = [x for x in lat if x[0] <= b]; above = [x for x in lat if x[0] >= b]
        if below and above:
            (b0, p0, _), (b1, p1, _) = below[-1], above[0]
            at = p0 if b1 == b0 else p0 + (p1 - p0) * (b - b0) / (b1 - b0)
            diff = f"{at:.2f} ({at - p:+.2f})"
        else:
            diff = "outside the latent ladder"
        print(f"  q={q}: {b:.3f}/{p:.2f}, {lb:.3f}/{lp:.2f}, {diff}")
PY
for search in decoded latent; do
  "$rvq" bench --backend cpu --batch 64 --rate-search "$search" 2>/dev/null | grep -i "encode" | head -3 | sed "s/^/bench $search: /"
done
"$rvq" bench --backend cpu --batch 64 --beam 1 --refine 1 --fixed-depth 2>/dev/null | grep -i "encode" | head -3 | sed "s/^/bench greedy fixed: /"
