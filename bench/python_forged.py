"""Peak memory of the Python package on a forged archive: 64 images of 8192x8192 at one
codebook, all indices 0, range-coded to 256 KB (docs/BENCHMARKS.md, "Memory").

    cargo run --release -p rvq-archive --example forge_large -- /tmp/forged.rvq \\
        "$(rvq info --json samples.rvq | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')" 64 8192
    python bench/python_forged.py /tmp/forged.rvq [STEPS]

Opens it (names and checksums are read, no pixel decoded) and takes STEPS images (default 2)
from its iterator, printing the time and the process's peak RSS after each.
"""

import resource
import sys
import time

import rvq


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    path, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    start = time.perf_counter()
    archive = rvq.open(path, backend="cpu")
    print(f"open: {len(archive)} images, {time.perf_counter() - start:.1f} s, peak RSS {peak_mb():.0f} MB", flush=True)
    images = iter(archive)
    for k in range(steps):
        start = time.perf_counter()
        image = next(images)
        print(f"image {k}: {image.shape}, {time.perf_counter() - start:.1f} s, peak RSS {peak_mb():.0f} MB", flush=True)


if __name__ == "__main__":
    main()
