"""Encode, decode and evaluate collections on a Ray cluster: one Ray task per shard.

    python -m rvq.ray encode --shards N --work-dir DIR -o OUT.rvq INPUT...
    python -m rvq.ray decode --work-dir DIR -o OUTDIR ARCHIVE
    python -m rvq.ray eval ARCHIVE --against DIR

``encode`` lists the files as ``rvq encode`` does (PNG files under the inputs, sorted, plus
``--files-from``), cuts the list into N contiguous shards and encodes each in one task, which
loads the model once and writes ``DIR/parts/part-NNNNN.rvq`` under a temporary name, renamed
when complete. ``DIR/manifest.json`` records the file list's hash, N, the model's fingerprint,
the options and the format of the work folder; a rerun of the same command keeps the parts
that are there and valid and redoes only the others, and a manifest that does not match is
refused. The parts are then merged, in order, into OUT: byte for byte the archive ``rvq
encode`` writes for the same inputs and options on the same backend (shards of one encode
merge into it; ``tests/test_ray.py`` checks it).

Ray retries a task whose worker or node dies (``--retries``, 3 by default); a bad input is not
retried: the job stops with the library's message, which names the file, or with
``--skip-bad`` leaves the file out and says so. Without ``--address`` a local cluster is
started for the run. Tasks are plain Ray Core tasks, one per shard: a shard is one model load
and one write, and resuming is by what was written (docs/SCALE.md measures the per-shard cost
and sizes shards from it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import rvq
from rvq import _rvq

WORK_FORMAT = 1  # of DIR: manifest.json and parts/


class JobError(Exception):
    """A job that cannot go on: the message says why, in one line."""


def stored_name(file: Path, inputs: Sequence[Path]) -> str:
    """The name ``rvq encode`` stores ``file`` under: its path relative to the input folder it
    was found in (or its file name when given directly), with ``/`` separators."""
    for folder in inputs:
        if folder.is_dir():
            try:
                return file.relative_to(folder).as_posix()
            except ValueError:
                continue
    return file.name


def list_inputs(inputs: Sequence[str], files_from: Optional[str]) -> Tuple[List[Path], List[Path]]:
    """The inputs (with ``--files-from``'s lines added) and the files they hold, in ``rvq
    encode``'s order."""
    paths = [Path(p) for p in inputs]
    if files_from is not None:
        text = Path(files_from).read_text()
        paths += [Path(line.strip()) for line in text.splitlines() if line.strip()]
    if not paths:
        raise JobError("no inputs given")
    files = [Path(f) for f in _rvq.collect_images([str(p) for p in paths])]
    if not files:
        raise JobError("no PNG files found in the inputs given")
    return paths, files


def shard_range(count: int, index: int, shards: int) -> range:
    """Shard ``index`` (0-based) of ``shards`` over ``count`` items: contiguous, so shards in
    order concatenate to the whole (as ``rvq encode --shard``)."""
    return range(index * count // shards, (index + 1) * count // shards)


def encode_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The options every shard is encoded with (and the manifest records)."""
    return {
        "quality": args.quality,
        "psnr": args.psnr,
        "codebooks": args.codebooks,
        "beam": args.beam,
        "refine": args.refine,
        "entropy": not args.no_entropy,
        "names": not args.no_names,
        "model": args.model,
        "backend": args.backend,
    }


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _task_threads() -> None:
    # Ray tells a task its CPUs through OMP_NUM_THREADS; burn's CPU backend sizes its thread
    # pool from RAYON_NUM_THREADS when the pool starts, so two tasks on two CPUs do not each
    # start two threads.
    if "OMP_NUM_THREADS" in os.environ:
        os.environ.setdefault("RAYON_NUM_THREADS", os.environ["OMP_NUM_THREADS"])


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def encode_shard(
    index: int,
    files: List[str],
    names: List[str],
    options: Dict[str, Any],
    parts: str,
    skip_bad: bool,
) -> Tuple[str, List[str], float]:
    """One shard: read its files as ``rvq encode`` reads them, encode, write the part under a
    temporary name and rename it. Returns the part's path, the files skipped and the worker's
    peak RSS (MB)."""
    _task_threads()
    if os.environ.get("RVQ_RAY_TEST_KILL_ONCE") == str(index):
        # Test hook: the first attempt of this shard dies as a killed worker would.
        marker = Path(parts) / f".killed-{index}"
        if not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), 9)
    codec = _task_codec(options["model"], options["backend"])
    images, kept, skipped = [], [], []
    for f, name in zip(files, names):
        try:
            image = rvq._array(_rvq.read_image(f)[0])
        except rvq.InputError:
            if not skip_bad:
                raise
            skipped.append(f)
            continue
        images.append(image)
        kept.append(name)
    data = codec.encode(
        images,
        names=kept if options["names"] else None,
        quality=options["quality"],
        psnr=options["psnr"],
        codebooks=options["codebooks"],
        beam=options["beam"],
        refine=options["refine"],
        entropy=options["entropy"],
    )
    final = Path(parts) / part_name(index)
    _write_atomic(final, data)
    return str(final), skipped, _peak_rss_mb()


_codecs: Dict[Tuple[Optional[str], str], rvq.Codec] = {}


def _task_codec(model: Optional[str], backend: str) -> rvq.Codec:
    # A worker process that runs several shards loads the model once.
    key = (model, backend)
    if key not in _codecs:
        _codecs[key] = rvq.Codec(model, backend)
    return _codecs[key]


def part_name(index: int) -> str:
    return f"part-{index:05d}.rvq"


def manifest_for(files: List[Path], names: List[str], shards: int, options: Dict[str, Any], fingerprint: str) -> Dict[str, Any]:
    digest = hashlib.sha256()
    for f, n in zip(files, names):
        digest.update(f"{os.path.abspath(f)}\0{n}\n".encode())
    return {
        "format": WORK_FORMAT,
        "rvq": "0.1.0",
        "files": len(files),
        "files_sha256": digest.hexdigest(),
        "shards": shards,
        "fingerprint": fingerprint,
        "options": options,
    }


def check_manifest(work: Path, manifest: Dict[str, Any]) -> None:
    """Writes the manifest into a new work folder, or checks an existing one against it."""
    path = work / "manifest.json"
    if path.exists():
        found = json.loads(path.read_text())
        if found != manifest:
            differs = sorted(k for k in set(found) | set(manifest) if found.get(k) != manifest.get(k))
            raise JobError(
                f"{path}: made for another job ({', '.join(differs)} differ): "
                "use a new --work-dir, or delete this one"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def valid_part(path: Path, expected: int, fingerprint: str) -> bool:
    """Whether the part at ``path`` is complete: it reads, holds ``expected`` images and was
    made with the job's model."""
    try:
        info = rvq.info(path)
    except (OSError, rvq.RvqError):
        return False
    return info["images"] == expected and info["fingerprint"] == fingerprint


def run_encode(args: argparse.Namespace) -> int:
    import ray

    out = Path(args.output)
    if out.exists() and not args.force:
        raise JobError(f"{out}: already exists (use --force to overwrite)")
    if args.shards < 1:
        raise JobError("--shards: expected at least 1")
    inputs, files = list_inputs(args.inputs, args.files_from)
    names = [stored_name(f, inputs) for f in files]
    options = encode_options(args)
    fingerprint = rvq.Codec(args.model, "cpu").fingerprint
    work = Path(args.work_dir)
    check_manifest(work, manifest_for(files, names, args.shards, options, fingerprint))
    parts = work / "parts"
    parts.mkdir(exist_ok=True)
    for stray in parts.glob(".*.tmp"):
        stray.unlink()  # a part whose writer died before its rename

    ranges = [shard_range(len(files), i, args.shards) for i in range(args.shards)]
    todo = [
        i
        for i, r in enumerate(ranges)
        if args.skip_bad or not valid_part(parts / part_name(i), len(r), fingerprint)
    ]
    if args.skip_bad:
        # Which images a part left out is not recorded: redo the parts that are incomplete.
        todo = [i for i in todo if not (parts / part_name(i)).exists()]
    _init_ray(ray, args)
    task = ray.remote(encode_shard).options(
        num_cpus=args.cpus_per_task,
        num_gpus=args.num_gpus,
        max_retries=args.retries,
        retry_exceptions=False,
    )
    pending = {
        task.remote(
            i,
            [str(files[j]) for j in ranges[i]],
            [names[j] for j in ranges[i]],
            options,
            str(parts),
            args.skip_bad,
        ): i
        for i in todo
    }
    print(
        f"rvq.ray: {len(files)} images in {args.shards} shards; "
        f"{len(todo)} to encode, {args.shards - len(todo)} already done",
        file=sys.stderr,
    )
    peak = 0.0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            pending.pop(ref)
            try:
                _, skipped, rss = ray.get(ref)
                peak = max(peak, rss)
            except ray.exceptions.RayTaskError as e:
                for other in pending:
                    ray.cancel(other)
                raise JobError(str(e.cause) if e.cause is not None else str(e)) from None
            for f in skipped:
                print(f"rvq.ray: {f}: skipped (unreadable)", file=sys.stderr)
    merged = rvq.merge([parts / part_name(i) for i in range(args.shards)])
    _write_atomic(out, merged)
    print(
        f"rvq.ray: wrote {out} ({len(merged)} bytes); peak worker RSS {peak:.0f} MB",
        file=sys.stderr,
    )
    return 0


def decode_blocks(archive: str, blocks: List[int], out: str, options: Dict[str, Any]) -> int:
    """Decodes ``blocks`` of ``archive`` into PNGs under ``out``, named as ``rvq decode``
    names them; returns the images written."""
    _task_threads()
    codec = _task_codec(options["model"], options["backend"])
    data = Path(archive).read_bytes()
    written = 0
    for b in blocks:
        for k, (name, image) in enumerate(codec._inner.decode_block(data, b)):
            target = Path(out) / output_name(name, b * rvq.BLOCK + k)
            target.parent.mkdir(parents=True, exist_ok=True)
            pixels, height, width = image
            _write_atomic(target, _rvq.png((pixels, height, width, 3)))
            written += 1
    return written


def output_name(name: Optional[str], position: int) -> str:
    """The file ``rvq decode`` writes a record as: its stored name with a ``.png``
    extension, or ``image-NNNNNN.png`` by position."""
    if name is None:
        return f"image-{position:06d}.png"
    parts = Path(name).parts
    if Path(name).is_absolute() or any(p in ("..", ".") for p in parts):
        raise JobError(f"{name!r}: not a safe relative name")
    return name if name.lower().endswith(".png") else name + ".png"


def eval_blocks(archive: str, blocks: List[int], against: str, options: Dict[str, Any]) -> List[Tuple[str, float, int]]:
    """Each image's squared error (values on [0, 1]) and value count against its original."""
    import numpy as np

    _task_threads()
    codec = _task_codec(options["model"], options["backend"])
    data = Path(archive).read_bytes()
    out = []
    for b in blocks:
        for name, raw in codec._inner.decode_block(data, b):
            image = rvq._array(raw)
            if name is None:
                raise JobError("eval needs an archive with names")
            original = rvq._array(_rvq.read_image(str(Path(against) / name))[0])
            if original.shape != image.shape:
                raise JobError(f"{name}: {original.shape} in --against, {image.shape} in the archive")
            diff = (original.astype(np.float64) - image.astype(np.float64)) / 255.0
            out.append((name, float(np.sum(diff * diff)), int(diff.size)))
    return out


def _block_shards(archive: str, shards: int) -> List[List[int]]:
    count = rvq.info(archive)["images"]
    blocks = (count + rvq.BLOCK - 1) // rvq.BLOCK
    n = min(shards, max(blocks, 1))
    return [list(shard_range(blocks, i, n)) for i in range(n)]


def run_decode(args: argparse.Namespace) -> int:
    import ray

    if rvq.info(args.archive)["version"] != 2:
        raise JobError(f"{args.archive}: rvq.ray decodes version-2 archives (rvq decode reads version 1)")
    options = {"model": args.model, "backend": args.backend}
    Path(args.output).mkdir(parents=True, exist_ok=True)
    _init_ray(ray, args)
    task = ray.remote(decode_blocks).options(num_cpus=args.cpus_per_task, num_gpus=args.num_gpus, max_retries=args.retries, retry_exceptions=False)
    refs = [task.remote(args.archive, s, args.output, options) for s in _block_shards(args.archive, args.shards)]
    try:
        written = sum(ray.get(refs))
    except ray.exceptions.RayTaskError as e:
        raise JobError(str(e.cause) if e.cause is not None else str(e)) from None
    print(f"rvq.ray: wrote {written} images to {args.output}", file=sys.stderr)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import math

    import ray

    options = {"model": args.model, "backend": args.backend}
    _init_ray(ray, args)
    task = ray.remote(eval_blocks).options(num_cpus=args.cpus_per_task, num_gpus=args.num_gpus, max_retries=args.retries, retry_exceptions=False)
    refs = [task.remote(args.archive, s, args.against, options) for s in _block_shards(args.archive, args.shards)]
    try:
        rows = [row for part in ray.get(refs) for row in part]
    except ray.exceptions.RayTaskError as e:
        raise JobError(str(e.cause) if e.cause is not None else str(e)) from None
    sse = sum(r[1] for r in rows)
    values = sum(r[2] for r in rows)
    mean_psnr = sum(-10 * math.log10(max(r[1] / r[2], 1e-12)) for r in rows) / max(len(rows), 1)
    info = rvq.info(args.archive)
    report = {
        "images": len(rows),
        "mse": sse / max(values, 1),
        "psnr_pooled": -10 * math.log10(max(sse / max(values, 1), 1e-12)),
        "psnr_mean": mean_psnr,
        "bits_per_pixel": info["bits_per_pixel"],
        "archive_bytes": info["total_bytes"],
    }
    print(json.dumps(report, indent=2))
    return 0


def _init_ray(ray: Any, args: argparse.Namespace) -> None:
    if ray.is_initialized():
        return
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rvq.ray", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
        s.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all)")
        s.add_argument("--cpus-per-task", type=float, default=1.0)
        s.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per task, on GPU nodes")
        s.add_argument("--retries", type=int, default=3, help="retries of a task whose worker or node died")
        s.add_argument("--model", help="a model folder (default: the built-in model)")
        s.add_argument("--backend", default="auto", choices=["auto", "cpu", "wgpu"])
        s.add_argument("--shards", type=int, default=8)

    e = sub.add_parser("encode", help="encode files into one archive, a shard per task")
    common(e)
    e.add_argument("inputs", nargs="*", help="PNG files or folders")
    e.add_argument("--files-from", help="also the files and folders listed here, one per line")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--work-dir", required=True)
    e.add_argument("--force", action="store_true", help="overwrite the output")
    e.add_argument("--skip-bad", action="store_true", help="leave unreadable files out instead of stopping")
    e.add_argument("--quality", type=int)
    e.add_argument("--psnr", type=float)
    e.add_argument("--codebooks", type=int)
    e.add_argument("--beam", type=int)
    e.add_argument("--refine", type=int)
    e.add_argument("--no-entropy", action="store_true")
    e.add_argument("--no-names", action="store_true")

    d = sub.add_parser("decode", help="decode an archive to PNGs, blocks spread over tasks")
    common(d)
    d.add_argument("archive")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--work-dir", help="unused by decode; accepted for symmetry")

    v = sub.add_parser("eval", help="PSNR of an archive against its originals, summed per task")
    common(v)
    v.add_argument("archive")
    v.add_argument("--against", required=True, help="the folder of the originals")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    run = {"encode": run_encode, "decode": run_decode, "eval": run_eval}[args.command]
    try:
        return run(args)
    except (JobError, rvq.RvqError, OSError) as e:
        print(f"rvq.ray: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
