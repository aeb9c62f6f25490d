#!/bin/bash
# big.sh FIT Q IMG... : encode each at full size with --fit FIT at quality Q: bytes, bpp, PSNR, seconds, peak RSS
R=${RVQ:-rvq}; fit=$1; q=$2; shift 2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for img in "$@"; do
  /usr/bin/time -f "%e %M" -o "$tmp/t" $R encode --backend cpu --force --fit "$fit" --quality "$q" -o "$tmp/a.rvq" "$img" 2>/dev/null
  $R decode --backend cpu --force -o "$tmp/d" "$tmp/a.rvq" 2>/dev/null
  ${PY:-python3} - "$img" "$tmp/d/$(basename "$img")" "$(stat -c %s "$tmp/a.rvq")" "$(cat "$tmp/t")" "$fit" "$q" <<'PY'
import sys, numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float64)
b = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float64)
n = int(sys.argv[3]); px = a.shape[0] * a.shape[1]; s, kb = sys.argv[4].split()
p = 10 * np.log10(255**2 / ((a - b) ** 2).mean())
print(f"{sys.argv[1].split('/')[-1]} {a.shape[1]}x{a.shape[0]} fit {sys.argv[5]} q {sys.argv[6]} bytes {n} bpp {n*8/px:.4f} psnr {p:.3f} s {s} peak MB {int(kb)//1024}")
PY
done
