"""(a) half-res filter then bicubic up, vs (b) half-res no filter, bicubic up, then LS filter at full res."""
import os, subprocess, sys, tempfile
import numpy as np
from PIL import Image
rvq = os.environ["RVQ"]; src = sys.argv[1]; quals = [int(q) for q in sys.argv[2].split(",")]
names = sorted(f for f in os.listdir(src) if f.endswith(".png"))
tmp = tempfile.mkdtemp()
def feats(y):
    p = np.pad(y, ((1,1),(1,1),(0,0)), mode="edge"); H, W = y.shape[:2]
    s = lambda dy, dx: p[1+dy:1+dy+H, 1+dx:1+dx+W]
    return s, H, W
def lsfilter(x, y):
    s, H, W = feats(y); out = np.empty_like(y)
    for k in range(3):
        a, b = [c for c in range(3) if c != k]
        F = [s(0,0)[..., k], s(0,1)[..., k] + s(0,-1)[..., k], s(1,0)[..., k] + s(-1,0)[..., k],
             s(1,1)[..., k] + s(-1,-1)[..., k], s(1,-1)[..., k] + s(-1,1)[..., k], y[..., a], y[..., b], np.ones((H, W))]
        A = np.stack([f.ravel() for f in F], 1); c, *_ = np.linalg.lstsq(A, x[..., k].ravel(), rcond=None)
        out[..., k] = (A @ c).reshape(H, W)
    return np.clip(np.round(out), 0, 255)
def psnr(x, y): return 10 * np.log10(255 ** 2 / ((x - y) ** 2).mean())
for q in quals:
    res = {"a": [0, []], "b": [0, []]}
    pix = 0
    for n in names:
        im = Image.open(os.path.join(src, n)).convert("RGB"); w, h = im.size; pix += w * h
        x = np.asarray(im, dtype=np.float64)
        small = im.resize(((w + 1) // 2, (h + 1) // 2), getattr(Image, os.environ.get("DOWN", "LANCZOS"))); p = os.path.join(tmp, "in.png"); small.save(p)
        for v, extra in (("a", []), ("b", ["--no-filter"])):
            a = os.path.join(tmp, "a.rvq"); d = os.path.join(tmp, "o")
            subprocess.run([rvq, "encode", "--backend", "cpu", "--force", "--quality", str(q), *extra, "-o", a, p], check=True, capture_output=True)
            subprocess.run([rvq, "decode", "--backend", "cpu", "--force", "-o", d, a], check=True, capture_output=True)
            up = np.asarray(Image.open(os.path.join(d, "in.png")).convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.float64)
            if v == "b": up = lsfilter(x, up)
            res[v][0] += os.path.getsize(a) * 8 + (240 if v == "b" else 0); res[v][1].append(psnr(x, up))
    for v in "ab": print(f"q {q} {v}: {res[v][0]/pix:.4f} bpp {np.mean(res[v][1]):.2f} dB", flush=True)
