"""What a second layer coding rvq's residual would reach (issue 29: WebP at every rate), as an
estimate before any format: each photograph of DEV is encoded by rvq at each quality given
(one archive per image, as scripts/photo_compare.py does), decoded, and its residual
(original − decode) coded by a plain transform coder: YCbCr, 8×8 orthonormal DCT, a uniform
quantizer with a dead zone (step S for luma, 1.6 S for chroma, rounding offset 0.28), and
adaptive code lengths (ideal, −log2 of adaptive counts) for each block's "any nonzero" flag and
each coefficient's magnitude (up to 15, then an Exp-Golomb escape) in contexts of channel,
frequency band, the neighbouring blocks' activity and the coefficient's left and upper
neighbours, plus a sign bit per nonzero coefficient. No side information is counted beyond
that. Prints, per rvq quality and step, bits per pixel (rvq's file + the residual's bits) and
PSNR averaged per image.

Usage: RVQ=target/release/rvq python residual.py DEV QUALITY... (needs numpy, scipy, Pillow)
"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from scipy.fft import dctn, idctn

TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
FROM_YCC = np.linalg.inv(TO_YCC)
STEPS = [40, 28, 20, 14, 10]


class Adaptive:
    """Adaptive frequency counts per context, halved past 4,096 as rvq's coder 1 does."""

    def __init__(self, symbols):
        self.counts = {}
        self.symbols = symbols

    def cost(self, ctx, sym):
        t = self.counts.setdefault(ctx, np.ones(self.symbols))
        bits = -math.log2(t[sym] / t.sum())
        t[sym] += 1
        if t.sum() > 4096:
            t[:] = np.maximum(1, t // 2)
        return bits


def code_length(q):
    """Bits for quantized coefficients q[channel, block row, block column, 8, 8]."""
    model = Adaptive(18)
    band = np.minimum(np.add.outer(np.arange(8), np.arange(8)), 9)
    bits = 0.0
    channels, bh, bw = q.shape[:3]
    for c in range(channels):
        for y in range(bh):
            for x in range(bw):
                blk = q[c, y, x]
                around = (np.abs(q[c, y, x - 1]).sum() if x else 0) + (np.abs(q[c, y - 1, x]).sum() if y else 0)
                nctx = min(3, int(np.log2(1 + around)))
                coded = int((blk != 0).any())
                bits += model.cost(("any", c, nctx), coded)
                if not coded:
                    continue
                for i in range(8):
                    for j in range(8):
                        a = abs(int(blk[i, j]))
                        left = abs(int(blk[i, j - 1])) if j else 0
                        up = abs(int(blk[i - 1, j])) if i else 0
                        bits += model.cost((c, band[i, j], nctx, min(2, left + up)), min(a, 16))
                        if a >= 16:
                            bits += 2 * math.log2(a - 14) + 1
                        if a:
                            bits += 1
    return bits


def layered(original, decoded, step):
    """The residual coded at `step`: (bits, the image with it added)."""
    h, w, _ = original.shape
    r = (original - decoded) @ TO_YCC.T
    hp, wp = (h + 7) // 8 * 8, (w + 7) // 8 * 8
    padded = np.zeros((hp, wp, 3))
    padded[:h, :w] = r
    blocks = padded.reshape(hp // 8, 8, wp // 8, 8, 3).transpose(4, 0, 2, 1, 3)
    coef = dctn(blocks, axes=(3, 4), norm="ortho")
    steps = np.array([step, 1.6 * step, 1.6 * step])[:, None, None, None, None]
    q = (np.sign(coef) * np.floor(np.abs(coef) / steps + 0.5 - 0.22)).astype(int)
    back = idctn(q * steps, axes=(3, 4), norm="ortho").transpose(1, 3, 2, 4, 0).reshape(hp, wp, 3)[:h, :w]
    return code_length(q), np.clip(np.round(decoded + back @ FROM_YCC.T), 0, 255)


def psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a - b) ** 2))


def main():
    rvq = os.environ.get("RVQ", "target/release/rvq")
    dev, qualities = sys.argv[1], [int(q) for q in sys.argv[2:]]
    files = sorted(f for f in os.listdir(dev) if f.endswith(".png"))
    work = tempfile.mkdtemp()
    for quality in qualities:
        base = {}
        for f in files:
            archive, out = f"{work}/{f}.{quality}.rvq", f"{work}/{f}.{quality}"
            subprocess.run([rvq, "encode", "--backend", "cpu", "--quality", str(quality), "-o", archive, f"{dev}/{f}"], check=True, capture_output=True)
            subprocess.run([rvq, "decode", "--backend", "cpu", "-o", out, archive], check=True, capture_output=True)
            original = np.asarray(Image.open(f"{dev}/{f}").convert("RGB")).astype(float)
            decoded = np.asarray(Image.open(f"{out}/{f}").convert("RGB")).astype(float)
            base[f] = (original, decoded, os.path.getsize(archive) * 8)
        pixels = sum(o.shape[0] * o.shape[1] for o, _, _ in base.values())
        bits = sum(b for _, _, b in base.values())
        print(f"rvq quality {quality}: {bits / pixels:.3f} bpp, {np.mean([psnr(o, d) for o, d, _ in base.values()]):.2f} dB", flush=True)
        for step in STEPS:
            total, db = 0.0, []
            for original, decoded, b in base.values():
                extra, out = layered(original, decoded, step)
                total += b + extra
                db.append(psnr(original, out))
            print(f"  + residual at step {step}: {total / pixels:.3f} bpp, {np.mean(db):.2f} dB", flush=True)


if __name__ == "__main__":
    main()
