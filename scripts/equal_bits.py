#!/usr/bin/env python3
"""For each rvq point of an `rvq eval --json` file, JPEG's and WebP's PSNR at the same payload
bits per pixel, interpolated linearly between their measured qualities (blank outside their
measured range), and rvq's lead. The comparisons in docs/RESULTS.md come from this.

Usage: scripts/equal_bits.py docs/results/samples.json
"""
import json
import sys


def at(points, bpp):
    """PSNR of a codec's curve at `bpp`, or None outside its measured range."""
    pts = sorted((p["payload_bits_per_pixel"], p["psnr"]) for p in points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= bpp <= x1:
            return y0 + (bpp - x0) / (x1 - x0) * (y1 - y0)
    return None


def main(path):
    points = json.load(open(path))
    curves = {c: [p for p in points if p["codec"] == c] for c in ("jpeg", "webp")}
    print("| rvq | bpp | PSNR dB | JPEG dB | rvq − JPEG | WebP dB | rvq − WebP |")
    print("|---|---|---|---|---|---|---|")
    for p in points:
        if p["codec"] != "rvq":
            continue
        bpp, psnr = p["payload_bits_per_pixel"], p["psnr"]
        cells = [p["setting"], f"{bpp:.3f}", f"{psnr:.2f}"]
        for codec in ("jpeg", "webp"):
            other = at(curves[codec], bpp)
            cells += ["", ""] if other is None else [f"{other:.2f}", f"{psnr - other:+.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
