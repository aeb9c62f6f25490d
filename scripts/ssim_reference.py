#!/usr/bin/env python3
"""SSIM reference values from an independent implementation (scikit-image), for the test
`ssim_matches_scikit_image` in src/compare.rs.

Each case is a pair of images: a sample photograph and a distortion of it (or another
photograph) computed by a formula the Rust test repeats exactly. scikit-image's SSIM with a
Gaussian window of sigma 1.5 (11 taps), population covariance and data range 1 is the
definition rvq's `compare::ssim` follows (Wang et al. 2004).

    pip install scikit-image pillow numpy
    python3 scripts/ssim_reference.py > tests/data/ssim_reference.json
"""

import json
import sys

import numpy as np
import skimage
from PIL import Image
from skimage.metrics import structural_similarity


def load(name):
    return np.asarray(Image.open(f"samples/{name}").convert("RGB")).astype(np.int64)


def distort(img, kind):
    h, w, _ = img.shape
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    i = (y * w + x) * 3 + c  # the value's index in row-major RGB order
    if kind == "none":
        return img
    if kind == "shift+10":
        return np.minimum(img + 10, 255)
    if kind == "noise":
        # A fixed pseudo-random pattern in -12..=12.
        return np.clip(img + (i * 7919 % 25) - 12, 0, 255)
    if kind == "posterize":
        return (img // 32) * 32
    raise ValueError(kind)


CASES = [
    ("astronaut-32.png", "astronaut-32.png", "noise"),
    ("chelsea-32.png", "chelsea-32.png", "shift+10"),
    ("coffee-32.png", "coffee-32.png", "posterize"),
    ("astronaut-32.png", "chelsea-32.png", "none"),
    ("coffee.png", "coffee.png", "noise"),
    ("astronaut.png", "astronaut.png", "posterize"),
]

out = []
for a_name, b_name, kind in CASES:
    a = load(a_name)
    b = distort(load(b_name), kind)
    s = structural_similarity(
        a / 255.0,
        b / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    out.append({"a": a_name, "b": b_name, "distortion": kind, "ssim": float(s)})
json.dump(
    {"implementation": f"scikit-image {skimage.__version__}", "cases": out},
    sys.stdout,
    indent=1,
)
print()
