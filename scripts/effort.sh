#!/usr/bin/env bash
# The effort ladder (`--effort 0..5`): for each level, the quality ladder (rvq eval, qualities
# 10..90) on the samples, on the four full-size scikit-image photographs the samples are cut
# from, and on the first N CIFAR-10 test images; each level's PSNR at the reference search's
# bits per pixel (interpolated along its own ladder); and encode throughput (rvq bench, batch
# 64, with greedy fixed-depth encoding in the same run). The reference, "ref", is the default
# encode before the linear-path estimates (beam 4, refinement 2, everything measured by
# decoding: `--effort 4 --refine 2 --rate-search decoded`), run by REF_RVQ (default: RVQ): since the beam
# writes each shallow cell with its own path, only a binary from before that change searches as
# the reference did: use e6f183f, the last of them (much older ones write payload coder 1, whose
# archives differ in size). docs/BENCHMARKS.md records a run.
#
#   RVQ=target/release/rvq REF_RVQ=rvq-of-e6f183f PY=python-with-scikit-image \
#     scripts/effort.sh ../shared/data/cifar-10-batches-bin [N] [OUT]
#
# Each Δ is given both ways: the level's PSNR interpolated at the reference's points, and its
# own points against the reference interpolated. The ladders are concave and sampled at five
# qualities, so linear interpolation understates whichever side is interpolated: the two
# bracket the difference.
#
# PY needs scikit-image and imageio (`python3 -m venv v && v/bin/pip install scikit-image`);
# the photographs are written from its bundled data, licences as its docstrings give them:
# astronaut (NASA, public domain), coffee (Rachel Michetti, CC0) and chelsea (Stefan van der
# Walt, CC0), stored as PNG; rocket (SpaceX, public domain), stored by scikit-image as a JPEG.
set -euo pipefail
rvq="${RVQ:-rvq}"
ref_rvq="${REF_RVQ:-$rvq}"
py="${PY:-python3}"
cifar="$1"
n="${2:-1000}"
out="${3:-$(mktemp -d)}"
mkdir -p "$out"
# The photographs go to a scratch folder, not beside the results (they are 1.4 MB of PNG).
photos=$(mktemp -d)
trap 'rm -rf "$photos"' EXIT
"$py" -c "import sys, skimage.data as d, imageio.v3 as io; [io.imwrite(f'{sys.argv[1]}/{n}.png', getattr(d, n)()) for n in ('astronaut', 'coffee', 'chelsea', 'rocket')]" "$photos"
{ uname -srm; grep -m1 'model name' /proc/cpuinfo || true; nproc; } > "$out/machine.txt"
search() { # the flags of level $1, or of the reference
  if [ "$1" = ref ]; then echo --effort 4 --refine 2 --rate-search decoded; else echo --effort "$1"; fi
}
binary() { if [ "$1" = ref ]; then echo "$ref_rvq"; else echo "$rvq"; fi; }
for effort in 0 1 2 3 4 5 ref; do
  for set in samples photos cifar; do
    case "$set" in
      samples) data=samples; extra=() ;;
      photos) data="$photos"; extra=() ;;
      cifar) data="$cifar"; extra=(--limit "$n") ;;
    esac
    start=$(date +%s.%N)
    "$(binary "$effort")" eval --backend cpu --data "$data" "${extra[@]}" --codebooks 8 --qualities 10,30,50,70,90 \
      --jpeg-qualities 50 --webp-qualities 50 $(search "$effort") \
      --json "$out/$set-e$effort.json" >/dev/null
    echo "eval $set effort $effort: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
for effort in 0 1 2 3 4 5 ref; do
  "$(binary "$effort")" bench --backend cpu --batch 64 --runs 3 $(search "$effort") --json "$out/bench-e$effort.json" \
    | grep -E '^\| encode' | sed "s/^/bench effort $effort: /"
done
"$rvq" bench --backend cpu --batch 64 --runs 3 --beam 1 --refine 1 --fixed-depth \
  --json "$out/bench-greedy.json" | grep -E '^\| encode' | sed "s/^/bench greedy fixed depth: /"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def ladder(path):
    pts = [p for p in json.load(open(path)) if p["codec"] == "rvq" and p["quality"] is not None]
    return sorted((p["file_bits_per_pixel"], p["psnr"], p["quality"]) for p in pts)
def at(lad, b):
    for (b0, p0, _), (b1, p1, _) in zip(lad, lad[1:]):
        if b0 <= b <= b1:
            return p0 if b1 == b0 else p0 + (p1 - p0) * (b - b0) / (b1 - b0)
    return None
print("| set | effort | q=10 bpp / dB | q=50 | q=90 | mean Δ dB at the reference's bpp (points in range) | mean Δ dB at the level's own bpp |")
print("|---|---|---|---|---|---|---|")
for s in ("samples", "photos", "cifar"):
    ref = ladder(f"{out}/{s}-eref.json")
    for e in [0, 1, 2, 3, 4, 5, "ref"]:
        lad = ladder(f"{out}/{s}-e{e}.json")
        cells = {q: f"{b:.3f} / {p:.2f}" for b, p, q in lad}
        diffs = [d - p for b, p, _ in ref if (d := at(lad, b)) is not None]
        each = ", ".join(f"{d:+.2f}" for d in diffs)
        mean = f"{sum(diffs) / len(diffs):+.3f} ({len(diffs)}/{len(ref)}: {each})" if diffs else "none in range"
        back = [p - r for b, p, _ in lad if (r := at(ref, b)) is not None]
        back = f"{sum(back) / len(back):+.3f} ({len(back)}/{len(lad)})" if back else "none in range"
        print(f"| {s} | {e} | {cells[10]} | {cells[50]} | {cells[90]} | {mean} | {back} |")
print()
print("| encode, batch 64 | images/s |")
print("|---|---|")
names = [f"e{e}" for e in range(6)] + ["eref", "greedy"]
for name in names:
    for m in json.load(open(f"{out}/bench-{name}.json")):
        if m["what"].startswith("encode") and "32×32" in m["what"]:
            print(f"| {name}: {m['what']} | {m['images_per_second']:.1f} |")
PY
