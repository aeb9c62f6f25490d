#!/bin/bash
# ladder.sh DIR FIT Q... : each of coffee.png and Dune.png in DIR (the development photographs
# of scripts/photos.py) encoded alone at each quality with --fit FIT, then decoded: bytes,
# bits per pixel, PSNR and encode seconds. RVQ names the binary (default rvq); PY a Python
# with numpy and Pillow (default python3); MEM, if set, the memory budget (--memory MEM).
set -euo pipefail
R=${RVQ:-rvq}; PY=${PY:-python3}; dir=$1; fit=$2; shift 2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for q in "$@"; do for img in coffee Dune; do
  t0=$(date +%s.%N)
  $R encode --backend cpu --force ${MEM:+--memory "$MEM"} --fit "$fit" --quality "$q" -o "$tmp/a.rvq" "$dir/$img.png" 2>/dev/null
  t1=$(date +%s.%N)
  $R decode --backend cpu --force -o "$tmp/d" "$tmp/a.rvq" 2>/dev/null
  $PY - "$dir/$img.png" "$tmp/d/$img.png" "$(stat -c %s "$tmp/a.rvq")" "$t0" "$t1" "$fit" "$q" "$img" <<'PY'
import sys, numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float64)
b = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float64)
n = int(sys.argv[3]); px = a.shape[0] * a.shape[1]
p = 10 * np.log10(255**2 / ((a - b) ** 2).mean())
print(f"fit {sys.argv[6]} q {sys.argv[7]} {sys.argv[8]} bytes {n} bpp {n*8/px:.4f} psnr {p:.3f} s {float(sys.argv[5])-float(sys.argv[4]):.1f}")
PY
done; done
