"""Shared fixtures: the `rvq` command built by cargo (the bytes to match), the samples."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def rvq_bin() -> str:
    found = os.environ.get("RVQ_BIN") or shutil.which("rvq")
    if not found:
        pytest.fail("set RVQ_BIN to the rvq command (scripts/test.sh does)")
    return found


def run_rvq(*args: str) -> subprocess.CompletedProcess:
    """`rvq ARGS` on the CPU backend where it takes one; fails the test if it fails."""
    env = dict(os.environ, RUST_BACKTRACE="0")
    done = subprocess.run([rvq_bin(), *args], capture_output=True, env=env)
    assert done.returncode == 0, done.stderr.decode()
    return done


def sample_files():
    return sorted(SAMPLES.glob("*.png"))


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A folder of 12 lossless PNGs: the samples and crops of them at other sizes, one in a
    subfolder (names carry it)."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "sub").mkdir()
    for f in sample_files():
        shutil.copy(f, folder / f.name)
    base = read_png(SAMPLES / "chelsea.png")
    for i, (h, w) in enumerate([(17, 23), (40, 24), (8, 8), (33, 31), (24, 48)]):
        crop = np.ascontiguousarray(np.tile(base, (2, 2, 1))[i : i + h, i : i + w])
        target = folder / ("sub" if i == 0 else ".") / f"crop{i}.png"
        Image.fromarray(crop).save(target)
    return folder


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path_factory, monkeypatch):
    # As a desktop session has: without one, Mesa's Vulkan loader warns when rvq looks for GPUs.
    if "XDG_RUNTIME_DIR" not in os.environ:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture(scope="session")
def many(tmp_path_factory) -> Path:
    """150 small lossless PNGs in two subfolders: three blocks of 64 and more, so that Ray's
    shards hold several blocks each, or none."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(3)
    base = read_png(SAMPLES / "coffee.png")
    for i in range(150):
        h, w = 8 + i % 9, 8 + (i * 7) % 13
        y, x = i % 16, (i * 3) % 16
        crop = np.ascontiguousarray(base[y : y + h, x : x + w])
        noisy = np.clip(crop.astype(int) + rng.integers(-8, 9, crop.shape), 0, 255).astype(np.uint8)
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(noisy).save(sub / f"{i:03d}.png")
    return folder
