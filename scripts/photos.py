#!/usr/bin/env python3
"""Writes the photograph sets: a training set and a development set kept apart from it.

    python3 scripts/photos.py OUT

OUT/train/ and OUT/dev/ receive PNG files. Needs scikit-image, imageio and Pillow
(`python3 -m venv v && v/bin/pip install scikit-image pillow`) and Debian's `mate-backgrounds`
package: installed (its files under /usr/share/backgrounds/mate), or unpacked by this script
from `apt-get download mate-backgrounds` run in OUT (no root needed for that).

Origins and licences (docs/MODEL.md, "Photographs"):
- scikit-image's bundled photographs, as its docstrings give them: astronaut (NASA, public
  domain), coffee (Rachel Michetti, CC0), chelsea (Stefan van der Walt, CC0), rocket (SpaceX,
  public domain). All four go to the development set, at full size (the set docs/RESULTS.md
  calls "photos").
- mate-backgrounds 1.26 (Debian), folder nature/: twelve photographs, GPL-2+, their authors
  in the package's debian/copyright. Stored as JPEG of 1280–2560 px; downscaled here by an
  area filter (a factor of at least 2, which also averages away their JPEG blocks). Four go
  to the development set at 768 px wide (Dune, LadyBird, Storm, Wood); the other eight are
  the training set, each at 1/2, 1/3 and 1/4 of its size.
"""

import glob
import os
import subprocess
import sys

import imageio.v3 as iio
import skimage.data as skd
from PIL import Image

DEV_SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket")
DEV_MATE = ("Dune", "LadyBird", "Storm", "Wood")
TRAIN_MATE = (
    "Aqua",
    "Blinds",
    "FreshFlower",
    "Garden",
    "GreenMeadow",
    "RainDrops",
    "TwoWings",
    "YellowFlower",
)


def mate_folder(out):
    installed = "/usr/share/backgrounds/mate/nature"
    if os.path.isdir(installed):
        return installed
    unpacked = os.path.join(out, "mate")
    folder = os.path.join(unpacked, "usr/share/backgrounds/mate/nature")
    if not os.path.isdir(folder):
        debs = glob.glob(os.path.join(out, "mate-backgrounds_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", "mate-backgrounds"], cwd=out, check=True)
            debs = glob.glob(os.path.join(out, "mate-backgrounds_*.deb"))
        subprocess.run(["dpkg-deb", "-x", debs[0], unpacked], check=True)
    return folder


def scaled(img, width):
    height = round(img.height * width / img.width)
    return img.resize((width, height), Image.Resampling.BOX)


def main():
    out = os.path.abspath(sys.argv[1])
    for sub in ("train", "dev"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name in DEV_SKIMAGE:
        iio.imwrite(os.path.join(out, "dev", f"{name}.png"), getattr(skd, name)())
    nature = mate_folder(out)
    for name in DEV_MATE:
        img = Image.open(os.path.join(nature, f"{name}.jpg")).convert("RGB")
        scaled(img, 768).save(os.path.join(out, "dev", f"{name}.png"))
    for name in TRAIN_MATE:
        img = Image.open(os.path.join(nature, f"{name}.jpg")).convert("RGB")
        for factor in (2, 3, 4):
            scaled(img, img.width // factor).save(
                os.path.join(out, "train", f"{name}-{factor}.png")
            )


if __name__ == "__main__":
    main()
