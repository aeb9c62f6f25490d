"""The archive's bytes and the PSNR of its decode averaged per image (8-bit RGB), against the
PNGs of a folder; with --each, each image's too. quality.sh and ab.sh read it.

    python3 psnr.py ARCHIVE ORIGINALS DECODED [--each]
"""
import glob
import os
import sys

import numpy as np
from PIL import Image

arch, ref, dec = sys.argv[1:4]
ps = []
for f in sorted(glob.glob(os.path.join(ref, "*.png"))):
    a = np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(os.path.join(dec, os.path.basename(f))).convert("RGB"), dtype=np.float64)
    ps.append(10 * np.log10(255.0**2 / ((a - b) ** 2).mean()))
line = f"{os.path.getsize(arch)} bytes, mean PSNR {np.mean(ps):.4f} dB"
if "--each" in sys.argv[4:]:
    line += ";" + "".join(f" {p:.3f}" for p in ps)
print(line)
