#!/usr/bin/env python3
"""Writes the photograph sets: a training set and a development set kept apart from it.

    python3 scripts/photos.py OUT

OUT/train/, OUT/train-lomiri/, OUT/train-plasma/ and OUT/dev/ receive PNG files. Needs
scikit-image, imageio and Pillow (`python3 -m venv v && v/bin/pip install scikit-image
pillow`) and Debian's `mate-backgrounds`, `lomiri-wallpapers-16.04` and `-20.04`, and
`plasma-workspace-wallpapers` packages: installed (their files under /usr/share/backgrounds
and /usr/share/wallpapers), or unpacked by this script from `apt-get download` run in OUT (no
root needed for that).

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
- lomiri-wallpapers 20.04.0 (Debian; Ubuntu Touch's wallpapers): the fifteen photographs
  (not the drawings and renderings beside them) of `lomiri-wallpapers-16.04` and
  `lomiri-wallpapers-20.04`, a second training set (OUT/train-lomiri, added 2026-12-07; it
  shares no picture with the development set). Authors and licences as the packages'
  debian/copyright gives them, each file's in LOMIRI below: CC-BY-4.0, CC-BY-SA-4.0,
  CC-BY-SA-3.0 or CC0-1.0. Stored as JPEG of 1365–6028 px; each is written at 768, 1152
  and 1536 px wide where that downscales it by at least 1.6 (area filter), so a photograph
  narrower than 2458 px gives fewer (42 images of the fifteen).
- plasma-workspace-wallpapers 4:5.27.5-2 (Debian; KDE Plasma's wallpapers; PLASMA_VERSION): the ten photographs
  (not the renderings and drawings beside them, nor Kite, a drawn kite on a photographed sky)
  in PLASMA below, a third training set (OUT/train-plasma, added 2026-12-07; it shares no
  picture with the development set). Each wallpaper's metadata.json names its author (in
  PLASMA) and the licence LGPLv3; the package's debian/copyright gives GPL-2+ for all its
  files. Stored as JPEG of 2560x1600; each is written at 768, 1152 and 1536 px wide (30
  images).
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

# (package, file, author, licence): the photographs of Ubuntu Touch's wallpaper packages.
LOMIRI = (
    ("16.04", "Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    ("16.04", "Dragonfly_by_Bolly.jpg", '"Bolly"', "CC-BY-SA-4.0"),
    ("16.04", "Picture_0B_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
    ("16.04", "Picture_1A_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
    ("16.04", "Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    ("16.04", "aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("16.04", "free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("16.04", "friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("16.04", "greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("16.04", "life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("16.04", "picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("16.04", "seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    ("16.04", "sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("16.04", "analogpattern_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("20.04", "Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0"),
)
LOMIRI_WIDTHS = (768, 1152, 1536)

PLASMA_VERSION = "4:5.27.5-2"
# (wallpaper folder, author): the photographs of KDE Plasma's wallpapers, each 2560x1600.
PLASMA = (
    ("BytheWater", "Maciej Wiklo"),
    ("ColdRipple", "Risto Saukonpää"),
    ("ColorfulCups", "Dmitri Popov"),
    ("DarkestHour", "Risto Saukonpää"),
    ("EveningGlow", "Ian Hex"),
    ("FallenLeaf", "Martin Klapetek"),
    ("Grey", "Sigi Sagi"),
    ("OneStandsOut", "Risto Saukonpää"),
    ("Path", "Risto Saukonpää"),
    ("summer_1am", "Risto Saukonpää"),
)


def package_folder(
    out, package, subfolder, probe, unpack_to, root="usr/share/backgrounds", version=None
):
    """The package's folder under /ROOT, installed (holding `probe`) or unpacked into
    OUT/unpack_to; with `version`, refused unless the package is that version (a later one
    may hold other pictures)."""
    installed = os.path.join("/", root, subfolder)
    if os.path.isfile(os.path.join(installed, probe)):
        if version is not None:
            check_version(package, version, ["dpkg-query", "-W", "-f", "${Version}", package])
        return installed
    unpacked = os.path.join(out, unpack_to)
    folder = os.path.join(unpacked, root, subfolder)
    debs = glob.glob(os.path.join(out, f"{package}_*.deb"))
    if not os.path.isdir(folder):
        if not debs:
            wanted = package if version is None else f"{package}={version}"
            subprocess.run(["apt-get", "download", wanted], cwd=out, check=True)
            debs = glob.glob(os.path.join(out, f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", debs[0], unpacked], check=True)
    if version is not None and debs:
        check_version(package, version, ["dpkg-deb", "-f", debs[0], "Version"])
    return folder


def check_version(package, version, command):
    found = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    if found != version:
        sys.exit(f"{package}: version {found}, not {version}, which the training set was made from")


def mate_folder(out):
    return package_folder(out, "mate-backgrounds", "mate/nature", "Dune.jpg", "mate")


def scaled(img, width):
    height = round(img.height * width / img.width)
    return img.resize((width, height), Image.Resampling.BOX)


def main():
    out = os.path.abspath(sys.argv[1])
    for sub in ("train", "train-lomiri", "train-plasma", "dev"):
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
    for version, file, _author, _licence in LOMIRI:
        package = f"lomiri-wallpapers-{version}"
        folder = package_folder(out, package, "", file, package)
        img = Image.open(os.path.join(folder, file)).convert("RGB")
        stem = file.split("_by_")[0]
        for width in LOMIRI_WIDTHS:
            if img.width >= width * 1.6:
                scaled(img, width).save(
                    os.path.join(out, "train-lomiri", f"{stem}-{width}.png")
                )
    package = "plasma-workspace-wallpapers"
    for name, _author in PLASMA:
        folder = package_folder(
            out,
            package,
            name,
            "contents/images/2560x1600.jpg",
            package,
            "usr/share/wallpapers",
            PLASMA_VERSION,
        )
        img = Image.open(os.path.join(folder, "contents/images/2560x1600.jpg")).convert("RGB")
        for width in LOMIRI_WIDTHS:
            scaled(img, width).save(os.path.join(out, "train-plasma", f"{name}-{width}.png"))


if __name__ == "__main__":
    main()
