#!/usr/bin/env bash
# What `rvq encode --psnr` writes for a folder of photographs: for each target, the archive's
# bytes (all images in one archive), each image's PSNR as `rvq decode` writes it (sorted by
# name), and the encode's wall time.
#
#   RVQ=target/release/rvq scripts/psnr_target.sh photos/dev 28 30 32 34
#
# Needs python3 with numpy and Pillow. Works in a temporary folder, removed at the end.
set -euo pipefail
RVQ="${RVQ:-rvq}"
dir="$1"; shift
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
for t in "$@"; do
  start=$(date +%s.%N)
  "$RVQ" encode --backend cpu --psnr "$t" --force -o "$work/a.rvq" "$dir" 2> "$work/err" > /dev/null
  end=$(date +%s.%N)
  grep -v '^rvq: backend' "$work/err" >&2 || true
  rm -rf "$work/out"; "$RVQ" decode --backend cpu -o "$work/out" "$work/a.rvq" > /dev/null 2>&1
  python3 - "$dir" "$work/out" "$t" "$(stat -c %s "$work/a.rvq")" "$(echo "$end - $start" | bc)" <<'PY'
import os, sys
import numpy as np
from PIL import Image
src, out, t, size, secs = sys.argv[1:]
ps = []
for f in sorted(os.listdir(src)):
    if not f.lower().endswith(('.png', '.jpg', '.jpeg', '.webp')):
        continue
    o = np.asarray(Image.open(os.path.join(src, f)).convert('RGB'), dtype=np.float64)
    name = f if f.endswith('.png') else f + '.png'
    d = np.asarray(Image.open(os.path.join(out, name)).convert('RGB'), dtype=np.float64)
    ps.append(10 * np.log10(255.0**2 / np.mean((o - d) ** 2)))
print(f"--psnr {t}: {size} bytes; PSNR {' '.join(f'{p:.2f}' for p in ps)}; min {min(ps):.2f}; encode {float(secs):.2f} s")
PY
done
