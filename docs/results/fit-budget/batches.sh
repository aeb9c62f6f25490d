#!/usr/bin/env bash
# --fit archives of images of one pass do not depend on how many images a fitted pass holds:
# 182 crops of 104×104 pixels from the development photographs (scripts/photos.py), encoded
# with --fit 20 --batch 256 by two builds (c18587e's fitted 167 images a pass, 6e05bdb's 146),
# then compared byte for byte. Needs python3 with Pillow.
# Usage: docs/results/fit-budget/batches.sh <rvq before> <rvq after> photos/dev
set -euo pipefail
before=$1 after=$2 dev=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$dev" "$work/crops" <<'PY'
import glob, os, sys
from PIL import Image
os.makedirs(sys.argv[2])
n = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.png"))):
    im = Image.open(f).convert("RGB")
    w, h = im.size
    for y in range(0, h - 104, 104):
        for x in range(0, w - 104, 104):
            im.crop((x, y, x + 104, y + 104)).save(os.path.join(sys.argv[2], f"c{n:03d}.png"))
            n += 1
print(n, "crops")
PY
"$before" encode --backend cpu --fit 20 --batch 256 -o "$work/before.rvq" "$work/crops"
"$after" encode --backend cpu --fit 20 --batch 256 -o "$work/after.rvq" "$work/crops"
cmp "$work/before.rvq" "$work/after.rvq" && echo "the same archive, $(stat -c %s "$work/after.rvq") bytes"
