#!/usr/bin/env bash
# What `rvq encode --psnr` writes for a flat folder of PNG photographs: for each target, the
# archive's bytes (all images in one archive), each image's PSNR as `rvq decode` writes it
# (sorted by name), and the encode's wall time.
#
#   RVQ=target/release/rvq scripts/psnr_target.sh photos/dev 28 30 32 34
#
# Needs python3 with numpy and Pillow. Works in a temporary folder, removed at the end.
set -euo pipefail
RVQ="${RVQ:-rvq}"
dir="$1"; shift
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
for t in "$@"; do
  start=$(date +%s%N)
  if ! "$RVQ" encode --backend cpu --psnr "$t" --force -o "$work/a.rvq" "$dir" 2> "$work/err" > /dev/null; then
    cat "$work/err" >&2; exit 1
  fi
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  grep -v '^rvq: backend' "$work/err" >&2 || true
  rm -rf "$work/out"; "$RVQ" decode --backend cpu -o "$work/out" "$work/a.rvq" > /dev/null
  python3 - "$dir" "$work/out" "$t" "$(stat -c %s "$work/a.rvq")" "$ms" <<'PY'
import os, sys
import numpy as np
from PIL import Image
src, out, t, size, ms = sys.argv[1:]
ps = []
for f in sorted(x for x in os.listdir(src) if x.lower().endswith('.png')):
    o = np.asarray(Image.open(os.path.join(src, f)).convert('RGB'), dtype=np.float64)
    d = np.asarray(Image.open(os.path.join(out, f)).convert('RGB'), dtype=np.float64)
    ps.append(10 * np.log10(255.0**2 / np.mean((o - d) ** 2)))
print(f"--psnr {t}: {size} bytes; PSNR {' '.join(f'{p:.2f}' for p in ps)}; min {min(ps):.2f}; encode {int(ms) / 1000:.2f} s")
PY
done
