"""Trial: encode each photograph resampled by a factor s, decode, resample back, PSNR vs original."""
import os, subprocess, sys, tempfile, json
import numpy as np
from PIL import Image
rvq = os.environ.get("RVQ", "rvq")
src = sys.argv[1]; scale = float(sys.argv[2]); quals = [int(q) for q in sys.argv[3].split(",")]
extra = sys.argv[4:] 
names = sorted(f for f in os.listdir(src) if f.endswith(".png"))
tmp = tempfile.mkdtemp()
rows = []
for q in quals:
    bits = 0; pix = 0; psnrs = []
    for n in names:
        im = Image.open(os.path.join(src, n)).convert("RGB")
        w, h = im.size
        sw, sh = round(w * scale), round(h * scale)
        up = im.resize((sw, sh), Image.LANCZOS) if scale != 1 else im
        p = os.path.join(tmp, "in.png"); up.save(p)
        a = os.path.join(tmp, "a.rvq")
        subprocess.run([rvq, "encode", "--backend", "cpu", "--force", "--quality", str(q), *extra, "-o", a, p], check=True, capture_output=True)
        d = os.path.join(tmp, "out")
        subprocess.run([rvq, "decode", "--backend", "cpu", "--force", "-o", d, a], check=True, capture_output=True)
        out = Image.open(os.path.join(d, "in.png")).convert("RGB")
        back = out.resize((w, h), Image.BOX if scale > 1 else getattr(Image, os.environ.get("UP", "LANCZOS"))) if scale != 1 else out
        x = np.asarray(im, dtype=np.float64); y = np.asarray(back, dtype=np.float64)
        mse = ((x - y) ** 2).mean()
        psnrs.append(10 * np.log10(255 ** 2 / mse))
        bits += os.path.getsize(a) * 8; pix += w * h
    rows.append((q, bits / pix, float(np.mean(psnrs))))
    print(f"scale {scale} q {q}: {bits/pix:.3f} bpp {np.mean(psnrs):.2f} dB", flush=True)
