#!/usr/bin/env python3
"""rvq against JPEG, WebP and AVIF on a folder of photographs, as whole files.

    python3 scripts/photo_compare.py DIR [--model M] [--qualities 10,30,50,70,90,100]
        [--effort E] [--rvq-args "--no-filter"] [--json OUT.json] > OUT.md

Each photograph is encoded on its own, so every codec pays its own header per image. rvq:
`rvq encode --quality Q` (one archive per image; `RVQ` names the binary, default `rvq` on
PATH) then `rvq decode`. JPEG (libjpeg via Pillow, 4:2:0), WebP (libwebp via Pillow,
method 6, its slowest and best) and AVIF (libavif via Pillow, speed 4) over a ladder of their
qualities. For every setting: bits per pixel over the whole set (all files' bytes over all
pixels) and PSNR averaged per image (8-bit RGB, peak 255). Then each codec's PSNR at each of
rvq's points, interpolated linearly along its ladder (blank outside it), and rvq's lead.
Needs Pillow with AVIF (Pillow 11.3 or later wheels: `pip install pillow numpy`).
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

LADDERS = {
    "jpeg": [5, 10, 20, 30, 50, 70, 85, 95],
    "webp": [0, 5, 10, 25, 50, 75, 90, 95],
    "avif": [10, 20, 30, 40, 50, 60, 70, 80, 90],
}


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def classical(codec, img, q):
    buf = io.BytesIO()
    if codec == "jpeg":
        img.save(buf, "JPEG", quality=q)
    elif codec == "webp":
        img.save(buf, "WEBP", quality=q, method=6)
    else:
        img.save(buf, "AVIF", quality=q, speed=4)
    data = buf.getvalue()
    back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return len(data), back


def rvq_point(rvq, path, q, model, effort, extra, tmp):
    archive = os.path.join(tmp, "a.rvq")
    out = os.path.join(tmp, "out")
    cmd = [rvq, "encode", "--backend", "cpu", "--quality", str(q), "--force", "-o", archive]
    if model:
        cmd += ["--model", model]
    if effort is not None:
        cmd += ["--effort", str(effort)]
    subprocess.run(cmd + extra + [path], check=True, capture_output=True)
    cmd = [rvq, "decode", "--backend", "cpu", "--force", "-o", out, archive]
    if model:
        cmd += ["--model", model]
    subprocess.run(cmd, check=True, capture_output=True)
    name = os.path.basename(path)
    decoded = os.path.join(out, name if name.endswith(".png") else name + ".png")
    back = np.asarray(Image.open(decoded).convert("RGB"))
    return os.path.getsize(archive), back


def at(curve, bpp):
    pts = sorted(curve)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= bpp <= x1:
            return y0 + (bpp - x0) / (x1 - x0) * (y1 - y0)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--model")
    ap.add_argument("--qualities", default="10,30,50,70,90,100")
    ap.add_argument("--effort", type=int)
    ap.add_argument("--rvq-args", default="", help="more arguments for rvq encode, such as --no-filter")
    ap.add_argument("--json")
    args = ap.parse_args()
    rvq = os.environ.get("RVQ", "rvq")
    files = sorted(
        os.path.join(args.dir, f)
        for f in os.listdir(args.dir)
        if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))
    )
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    pixels = sum(i.shape[0] * i.shape[1] for i in images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for q in [int(v) for v in args.qualities.split(",")]:
            sizes, psnrs = [], []
            for f, img in zip(files, images):
                n, back = rvq_point(rvq, f, q, args.model, args.effort, args.rvq_args.split(), tmp)
                sizes.append(n)
                psnrs.append(psnr(img, back))
            rows.append(("rvq", q, 8 * sum(sizes) / pixels, float(np.mean(psnrs))))
            print(f"rvq q={q}: {rows[-1][2]:.3f} bpp {rows[-1][3]:.2f} dB", file=sys.stderr)
    for codec, ladder in LADDERS.items():
        for q in ladder:
            sizes, psnrs = [], []
            for img in images:
                n, back = classical(codec, Image.fromarray(img), q)
                sizes.append(n)
                psnrs.append(psnr(img, back))
            rows.append((codec, q, 8 * sum(sizes) / pixels, float(np.mean(psnrs))))
    curves = {c: [(r[2], r[3]) for r in rows if r[0] == c] for c in LADDERS}
    extra = f"; rvq encode {args.rvq_args}" if args.rvq_args else ""
    print(f"{len(files)} photographs, {pixels} pixels; model: {args.model or 'built in'}{extra}")
    print()
    print("| rvq quality | bpp | rvq dB | JPEG dB | WebP dB | AVIF dB | rvq − WebP | rvq − AVIF |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "" if v is None else f"{v:.2f}"
    lead = lambda a, b: "" if b is None else f"{a - b:+.2f}"
    for codec, q, bpp, db in rows:
        if codec != "rvq":
            continue
        j, w, a = (at(curves[c], bpp) for c in ("jpeg", "webp", "avif"))
        print(f"| {q} | {bpp:.3f} | {db:.2f} | {fmt(j)} | {fmt(w)} | {fmt(a)} | {lead(db, w)} | {lead(db, a)} |")
    print()
    print("| codec | quality | bpp | dB |")
    print("|---|---|---|---|")
    for codec, q, bpp, db in rows:
        print(f"| {codec} | {q} | {bpp:.3f} | {db:.2f} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                [dict(codec=c, quality=q, bpp=b, psnr=d) for c, q, b, d in rows], out, indent=1
            )


if __name__ == "__main__":
    main()
