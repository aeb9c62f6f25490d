"""The Python package's bars and the Ray jobs' costs, measured on this machine
(docs/SCALE.md records a run):

    RVQ_BIN=target/release/rvq python bench/ray_scale.py ../shared/data/cifar-10-batches-bin [N]

Writes the first N (default 1,000) CIFAR-10 test images as lossless PNGs, then checks and
times, on the CPU backend:
  1. rvq.encode of the first 100 (read with Pillow, names given) against `rvq encode` of the
     same files, byte for byte, and rvq.decode against `rvq decode`, pixel for pixel;
  2. `python -m rvq.ray encode --shards 8` of all N against `rvq encode`, byte for byte; then
     one part deleted and the same command again: only that part rewritten, same bytes;
  3. the per-shard fixed cost (the same encode at 1, 8 and 32 shards), images/s with 1 and 2
     workers, the model load, merge MB/s (parts of whole blocks, copied, and parts that end
     inside a block, merged record by record) and the workers' peak RSS.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import rvq
import rvq.ray as job

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
RVQ = os.environ.get("RVQ_BIN", "rvq")


def cifar_pngs(folder: Path, cifar: Path, n: int) -> Path:
    raw = np.fromfile(cifar / "test_batch.bin", dtype=np.uint8).reshape(-1, 3073)[:n]
    out = folder / "images"
    out.mkdir()
    for i, row in enumerate(raw):
        Image.fromarray(row[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(out / f"{i:05d}.png")
    return out


def cli(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([RVQ, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def ray_encode(images: Path, work: Path, out: Path, shards: int) -> float:
    start = time.perf_counter()
    code = job.main(["encode", "--backend", "cpu", "--shards", str(shards), "--work-dir", str(work), "-o", str(out), "--force", str(images)])
    assert code == 0
    return time.perf_counter() - start


def main() -> None:
    cifar, n = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    report = {"images": n, "machine": f"{os.cpu_count()} CPUs"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = cifar_pngs(tmp, cifar, n)
        files = sorted(images.glob("*.png"))

        # 1. The API against the command, 100 images.
        (tmp / "h").mkdir()
        for f in files[:100]:
            os.link(f, tmp / "h" / f.name)
        cli("encode", "--backend", "cpu", "-o", str(tmp / "h.rvq"), str(tmp / "h"))
        pixels = [np.asarray(Image.open(f).convert("RGB")) for f in files[:100]]
        ours = rvq.encode(pixels, names=[f.name for f in files[:100]], backend="cpu")
        report["api_100_bytes_equal"] = ours == (tmp / "h.rvq").read_bytes()
        cli("decode", "--backend", "cpu", "-o", str(tmp / "hd"), str(tmp / "h.rvq"))
        back = rvq.decode(ours, backend="cpu")
        report["api_100_pixels_equal"] = all(
            np.array_equal(b, np.asarray(Image.open(tmp / "hd" / f.name))) for b, f in zip(back, files[:100])
        )

        # 2. Sharded on Ray against one encode, then a resume.
        report["cli_encode_s"] = cli("encode", "--backend", "cpu", "-o", str(tmp / "s.rvq"), str(images))
        single = (tmp / "s.rvq").read_bytes()
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        report["ray_8_shards_s"] = ray_encode(images, tmp / "w8", tmp / "d.rvq", 8)
        report["ray_8_shards_equal"] = (tmp / "d.rvq").read_bytes() == single
        parts = tmp / "w8" / "parts"
        before = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.rvq")}
        (parts / "part-00003.rvq").unlink()
        report["ray_resume_one_part_s"] = ray_encode(images, tmp / "w8", tmp / "d.rvq", 8)
        after = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.rvq")}
        report["ray_resume_rewrote"] = sorted(k for k in after if after[k] != before.get(k))
        report["ray_resume_equal"] = (tmp / "d.rvq").read_bytes() == single

        # 3. Costs: shards of one job on 2 workers, then 1 worker.
        for shards in (1, 8, 32):
            report[f"ray_2cpu_{shards}_shards_s"] = ray_encode(images, tmp / f"a{shards}", tmp / "x.rvq", shards)
        ray.shutdown()
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        report["ray_1cpu_8_shards_s"] = ray_encode(images, tmp / "b8", tmp / "x.rvq", 8)
        ray.shutdown()

        start = time.perf_counter()
        codec = rvq.Codec(backend="cpu")
        report["model_load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        codec.encode(pixels[:1])
        report["first_image_s"] = time.perf_counter() - start

        # Merge: 200 copies of a nameless archive (names would collide). Of 1,024 images, whole
        # blocks: copied. Of 1,000, the parts end inside a block: merged record by record.
        for count in (1024, 1000):
            batch = [np.asarray(Image.open(files[i % len(files)]).convert("RGB")) for i in range(count)]
            nameless = codec.encode(batch)
            start = time.perf_counter()
            merged = rvq.merge([nameless] * 200)
            seconds = time.perf_counter() - start
            report[f"merge_{count}_mb"] = len(merged) / 1e6
            report[f"merge_{count}_mb_per_s"] = len(merged) / 1e6 / seconds
        report["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
