"""Encode, decode and evaluate collections on a Ray cluster: one Ray task per shard.

    python -m rvq.ray encode --shards N --work-dir DIR -o OUT.rvq INPUT...
    python -m rvq.ray decode -o OUTDIR ARCHIVE
    python -m rvq.ray eval ARCHIVE --against DIR

``encode`` lists the files as ``rvq encode`` does (PNG, JPEG and WebP files under the inputs,
sorted, plus ``--files-from``), cuts the list into N contiguous shards of whole blocks (64
images; some shards are empty when there are fewer blocks than shards) and encodes each in one
task, which loads the model once and writes ``DIR/parts/part-NNNNN.rvq`` under a temporary
name, renamed when complete. ``DIR/manifest.json`` records the file list's hash, N, the model's fingerprint,
the options and the format of the work folder; a rerun of the same command keeps the parts
that are there and valid and redoes only the others, and a manifest that does not match is
refused. The parts are then merged, in order, into OUT, a block at a time (the driver holds
about a block, not the archive): byte for byte the archive ``rvq encode`` writes for the same
inputs and options on the same backend (shards of one encode merge into it;
``tests/test_ray.py`` checks it).

``decode`` spreads the archive's blocks over N tasks, each writing its images' PNGs (named as
``rvq decode`` names them) whole or not at all; ``--resume`` keeps the PNGs an interrupted run
wrote and decodes only the shards with files missing.

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
import re
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import rvq
from rvq import _rvq

WORK_FORMAT = 2  # of DIR: manifest.json and parts/ (2: shards of whole blocks)


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
        raise JobError("no PNG, JPEG or WebP files found in the inputs given")
    # Workers of a cluster resolve paths against their own folders: send absolute ones (the
    # inputs, the work folder and the output must be on a filesystem every node shares).
    # Symbolic links are kept, not resolved, so that names are stored as `rvq encode` stores
    # them (a link's own path below its input folder).
    return paths, [_absolute(f) for f in files]


def _absolute(path: Path) -> Path:
    """``path`` made absolute without resolving symbolic links (``os.path.abspath``)."""
    return Path(os.path.abspath(path))


def shard_range(count: int, index: int, shards: int) -> range:
    """Shard ``index`` (0-based) of ``shards`` over ``count`` items: contiguous, so shards in
    order concatenate to the whole (as ``rvq encode --shard``)."""
    return range(index * count // shards, (index + 1) * count // shards)


def block_shard_range(count: int, index: int, shards: int) -> range:
    """Shard ``index`` of ``shards`` over ``count`` images, cut between blocks of 64: every
    part but the last then holds whole blocks, and the merge copies them instead of coding
    them again (rvq_archive::merge)."""
    blocks = (count + rvq.BLOCK - 1) // rvq.BLOCK
    b = shard_range(blocks, index, shards)
    return range(min(b.start * rvq.BLOCK, count), min(b.stop * rvq.BLOCK, count))


def encode_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The options every shard is encoded with (and the manifest records)."""
    return {
        "quality": args.quality,
        "psnr": args.psnr,
        "codebooks": args.codebooks,
        "effort": args.effort,
        "beam": args.beam,
        "refine": args.refine,
        "fit": args.fit,
        "entropy": not args.no_entropy,
        "filter": not args.no_filter,
        "half_size": not args.no_half,
        "names": not args.no_names,
        "strict": args.strict,
        "model": rvq._model_location(args.model),
        "backend": args.backend,
    }


# The options of encode_options that rvq.Codec.encode takes as they are.
CODEC_OPTIONS = ("quality", "psnr", "codebooks", "effort", "beam", "refine", "fit", "entropy", "filter", "half_size")


def codec_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments of rvq.Codec.encode that `options` (encode_options') set: the
    check before a job and every shard's encode pass the same ones."""
    return {k: options[k] for k in CODEC_OPTIONS}


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


PIECE_PIXELS = 1 << 26  # a shard's images are encoded in pieces of whole blocks: 64 MP,
PIECE_IMAGES = 1024  # or 1,024 images (a GPU's batch), whichever comes first


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
    # Whole blocks at a time, up to PIECE_PIXELS or PIECE_IMAGES, so that a task holds that
    # many pixels, not its shard's: the pieces are whole blocks, which the merge copies (the
    # part is the shard's encode), and large enough for a GPU's passes of thumbnails.
    pieces, images, kept, notes = [], [], [], []
    pixels = 0

    def encode_pending() -> None:
        nonlocal pixels
        pieces.append(codec.encode(images, names=kept if options["names"] else None, **codec_options(options)))
        images.clear()
        kept.clear()
        pixels = 0

    for f, name in zip(files, names):
        try:
            raw, had_alpha = _rvq.read_image(f)
            if had_alpha and options.get("strict"):
                raise rvq.InputError(f"{f}: has an alpha channel (refused because of --strict)")
        except rvq.InputError as e:
            if not skip_bad:
                raise
            reason = str(e).removeprefix(f"{f}: ")
            notes.append(f"{f}: skipped ({reason})")
            continue
        if had_alpha:
            notes.append(f"{f}: alpha channel dropped")
        images.append(rvq._array(raw))
        kept.append(name)
        pixels += images[-1].shape[0] * images[-1].shape[1]
        if len(images) % rvq.BLOCK == 0 and (pixels >= PIECE_PIXELS or len(images) >= PIECE_IMAGES):
            encode_pending()
    if images or not pieces:
        encode_pending()
    data = pieces[0] if len(pieces) == 1 else rvq.merge(pieces)
    final = Path(parts) / part_name(index)
    _write_atomic(final, data)
    return str(final), notes, _peak_rss_mb()


_codecs: Dict[Tuple[Optional[str], str], rvq.Codec] = {}


def _task_codec(model: Optional[str], backend: str, cited: Optional[str] = None) -> rvq.Codec:
    # A worker process that runs several shards loads the model once. Without a model, the
    # built-in model the archive cites (`cited`), whatever folders the worker's directory holds.
    if model is None:
        return rvq._codec(backend, cited)
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
        "rvq": _version(),
        "files": len(files),
        "files_sha256": digest.hexdigest(),
        "shards": shards,
        "fingerprint": fingerprint,
        "options": options,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rvq")
    except PackageNotFoundError:
        return "unknown"


def check_manifest(work: Path, manifest: Dict[str, Any]) -> bool:
    """Writes the manifest into a new work folder (True), or checks an existing one against it
    (False)."""
    path = work / "manifest.json"
    if path.exists():
        try:
            found = json.loads(path.read_text())
        except ValueError:
            raise JobError(f"{path}: not a manifest (damaged?): delete the work folder") from None
        if found != manifest:
            differs = sorted(k for k in set(found) | set(manifest) if found.get(k) != manifest.get(k))
            raise JobError(
                f"{path}: made for another job ({', '.join(differs)} differ): "
                "use a new --work-dir, or delete this one"
            )
        return False
    work.mkdir(parents=True, exist_ok=True)
    # Parts of some other job whose manifest is gone go before this job's manifest is written:
    # a driver killed between the two then leaves no manifest to trust them by. Only files
    # named as parts are removed; anything else in the folder is left alone.
    parts = work / "parts"
    if parts.is_dir():
        for old in parts.glob("part-*.rvq"):
            old.unlink()
    _write_atomic(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return True


def valid_part(path: Path, expected: Any, fingerprint: str, skip_bad: bool) -> bool:
    """Whether the part at ``path`` is complete: it reads (every checksum), was made with the
    job's model and holds the shard's images: ``expected`` is their stored names, or their
    count when names are off. With ``skip_bad`` a part may hold a subsequence of the names
    (the images it left out)."""
    try:
        info = rvq.info(path)
    except (OSError, rvq.RvqError):
        return False
    if info["fingerprint"] != fingerprint:
        return False
    if isinstance(expected, int):
        return info["images"] == expected or (skip_bad and info["images"] <= expected)
    names = [e["name"] for e in info["entries"]]
    if names == expected:
        return True
    wanted = iter(expected)
    return skip_bad and all(any(n == w for w in wanted) for n in names)


def run_encode(args: argparse.Namespace) -> int:
    import ray

    out = Path(args.output)
    if out.exists() and not args.force:
        raise JobError(f"{out}: already exists (use --force to overwrite)")
    inputs, files = list_inputs(args.inputs, args.files_from)
    names = [stored_name(f, [_absolute(p) for p in inputs]) for f in files]
    seen = set()
    for f, name in zip(files, names):
        if name in seen and not args.no_names:
            raise JobError(f"{f}: a second input would be stored as {name!r}")
        seen.add(name)
    options = encode_options(args)
    # The options checked before anything is written: an encode of no images refuses what
    # every shard would.
    codec = rvq.Codec(args.model, "cpu")
    codec.encode([], **codec_options(options))
    work = Path(args.work_dir).resolve()
    # A new manifest's folder is cleared of other jobs' parts there.
    check_manifest(work, manifest_for(files, names, args.shards, options, codec.fingerprint))
    parts = work / "parts"
    parts.mkdir(exist_ok=True)
    for stray in parts.glob(".part-*.tmp"):
        stray.unlink()  # a part whose writer died before its rename

    ranges = [block_shard_range(len(files), i, args.shards) for i in range(args.shards)]
    expected = [[names[j] for j in r] if options["names"] else len(r) for r in ranges]
    todo = [
        i
        for i in range(args.shards)
        if not valid_part(parts / part_name(i), expected[i], codec.fingerprint, args.skip_bad)
    ]
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
                _, notes, rss = ray.get(ref)
                peak = max(peak, rss)
            except ray.exceptions.RayError as e:
                for other in pending:
                    ray.cancel(other)
                raise JobError(_task_error(e)) from None
            for note in notes:
                print(f"rvq.ray: {note}", file=sys.stderr)
    # Streamed a block at a time into OUT: the driver holds about a block, not the archive.
    size = rvq.merge([parts / part_name(i) for i in range(args.shards)], out, force=True)
    print(
        f"rvq.ray: wrote {out} ({size} bytes); peak worker RSS {peak:.0f} MB",
        file=sys.stderr,
    )
    return 0


def _first_images(stream, count: int):
    """The first ``count`` (name, image) pairs of a block stream, which yields them a block (or
    part of one) at a time."""
    # Checked before each step too, so that a task does not decode the next task's block.
    if count <= 0:
        return
    for step in stream:
        for item in step:
            count -= 1
            yield item
            if count <= 0:
                return


def _block_images(total: int, blocks: List[int]) -> int:
    """Images in the consecutive ``blocks`` of an archive of ``total``."""
    if not blocks:
        return 0
    return min((blocks[-1] + 1) * rvq.BLOCK, total) - blocks[0] * rvq.BLOCK


def _blocks_from(codec: rvq.Codec, archive: str, first: int):
    """The archive's blocks from block ``first`` on, decoded as asked for and read from the
    file as they are: the blocks before it are read and checked (lengths and checksums) but
    not decoded, and the task holds one block of the file, not all of it."""
    blocks = codec._inner.blocks_of_file(archive)
    blocks.skip(first)
    return blocks


def decode_blocks(archive: str, blocks: List[int], targets: List[Optional[str]], options: Dict[str, Any]) -> int:
    """Decodes ``blocks`` (consecutive) of ``archive`` into the PNG files ``targets`` (one per
    image of those blocks, in order; None for an image whose file a resumed decode keeps);
    returns the images decoded."""
    _task_threads()
    codec = _task_codec(options["model"], options["backend"], options.get("cited"))
    decoded = 0
    stream = _blocks_from(codec, archive, blocks[0]) if blocks else []
    for _, (pixels, height, width) in _first_images(stream, len(targets)):
        if targets[decoded] is not None:
            target = Path(targets[decoded])
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(target, _rvq.png((pixels, height, width, 3)))
        decoded += 1
    return decoded


def eval_blocks(archive: str, blocks: List[int], total: int, against: str, options: Dict[str, Any]) -> List[Tuple[str, float, int]]:
    """Each image's squared error (values on [0, 1]) and value count against its original."""
    import numpy as np

    _task_threads()
    codec = _task_codec(options["model"], options["backend"], options.get("cited"))
    out = []
    stream = _blocks_from(codec, archive, blocks[0]) if blocks else []
    for name, raw in _first_images(stream, _block_images(total, blocks)):
        image = rvq._array(raw)
        if name is None:
            raise JobError("eval needs an archive with names")
        original = rvq._array(_rvq.read_image(str(Path(against) / name))[0])
        if original.shape != image.shape:
            raise JobError(f"{name}: {original.shape} in --against, {image.shape} in the archive")
        diff = (original.astype(np.float64) - image.astype(np.float64)) / 255.0
        out.append((name, float(np.sum(diff * diff)), int(diff.size)))
    return out


def _block_shards(count: int, shards: int) -> List[List[int]]:
    """Shards of consecutive blocks of an archive of ``count`` images."""
    blocks = (count + rvq.BLOCK - 1) // rvq.BLOCK
    n = min(shards, max(blocks, 1))
    return [list(shard_range(blocks, i, n)) for i in range(n)]


def run_decode(args: argparse.Namespace) -> int:
    import ray

    archive = str(Path(args.archive).resolve())
    # Every checksum and name before any file is written: a damaged archive writes nothing.
    info = rvq.info(archive)
    if info["version"] < 2:
        raise JobError(f"{archive}: rvq.ray decodes archives of blocks, version 2 or later (rvq decode reads version 1)")
    names = [e["name"] for e in info["entries"]]
    out = Path(args.output).resolve()
    # Named as rvq decode names them, clashes refused alike (rvq::names in the library).
    try:
        targets = [Path(t) for t in _rvq.decode_targets(str(out), names)]
    except rvq.RvqError as e:
        raise JobError(f"{archive}: {e}") from None
    for t in targets:
        # A folder where a file goes, or a file where a folder does: refused before any task
        # writes, as rvq decode refuses them (rvq::names::check_target).
        try:
            _rvq.check_target(str(t))
        except rvq.RvqError as e:
            raise JobError(str(e)) from None
        if t.exists() and not (args.force or args.resume):
            raise JobError(f"{t}: already exists (use --force to overwrite, or --resume to keep it and decode the rest)")
    options = {"model": rvq._model_location(args.model), "cited": rvq.built_in_model(info["fingerprint"]), "backend": args.backend}
    out.mkdir(parents=True, exist_ok=True)
    _init_ray(ray, args)
    task = ray.remote(decode_blocks).options(num_cpus=args.cpus_per_task, num_gpus=args.num_gpus, max_retries=args.retries, retry_exceptions=False)
    refs, kept, shards = [], 0, _block_shards(len(names), args.shards)
    for shard in shards:
        first = shard[0] * rvq.BLOCK if shard else 0
        last = min((shard[-1] + 1) * rvq.BLOCK, len(names)) if shard else 0
        # Resumed: files written whole by an earlier run are kept (each was renamed into place
        # complete), and a shard none of whose files is missing is not decoded again.
        wanted = [None if args.resume and t.exists() else str(t) for t in targets[first:last]]
        kept += wanted.count(None)
        if shard and all(w is None for w in wanted):
            continue
        refs.append((last - first, task.remote(archive, shard, wanted, options)))
    print(
        f"rvq.ray: {len(names)} images in {len(shards)} shards; {len(refs)} to decode, "
        f"{len(shards) - len(refs)} already done",
        file=sys.stderr,
    )
    try:
        decoded = _gather(ray, [ref for _, ref in refs])
    finally:
        _remove_strays(targets)
    if decoded != [n for n, _ in refs]:
        raise JobError(f"{archive}: {sum(decoded)} images decoded of {sum(n for n, _ in refs)}")
    print(f"rvq.ray: wrote {len(targets) - kept} images to {out}, kept {kept}", file=sys.stderr)
    return 0


_TEMPORARY = re.compile(r"^\.(.+)\.[0-9a-f]{32}\.tmp$")


def _remove_strays(targets: List[Path]) -> None:
    """Removes the temporary files of ``targets`` that a task killed before its rename left
    (``_write_atomic``'s names), and no other file."""
    wanted = set(targets)
    for folder in {t.parent for t in targets}:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            m = _TEMPORARY.match(entry.name)
            if m and folder / m.group(1) in wanted:
                entry.unlink(missing_ok=True)


def _gather(ray, refs: List[Any]) -> List[Any]:
    """Every task's result, in order; on a failure the tasks still running are cancelled and
    the failure is raised as one line."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayError as e:
        for ref in refs:
            ray.cancel(ref)
        # Until they have stopped, cancelled tasks could leave temporary files behind.
        ray.wait(refs, num_returns=len(refs), timeout=30)
        raise JobError(_task_error(e)) from None


def run_eval(args: argparse.Namespace) -> int:
    import math

    import ray

    archive, against = str(Path(args.archive).resolve()), str(Path(args.against).resolve())
    info = rvq.info(archive)
    options = {"model": rvq._model_location(args.model), "cited": rvq.built_in_model(info["fingerprint"]), "backend": args.backend}
    _init_ray(ray, args)
    task = ray.remote(eval_blocks).options(num_cpus=args.cpus_per_task, num_gpus=args.num_gpus, max_retries=args.retries, retry_exceptions=False)
    total = info["images"]
    refs = [task.remote(archive, s, total, against, options) for s in _block_shards(total, args.shards)]
    rows = [row for part in _gather(ray, refs) for row in part]
    if len(rows) != total:
        raise JobError(f"{archive}: {len(rows)} images measured of {total}")
    sse = sum(r[1] for r in rows)
    values = sum(r[2] for r in rows)
    mean_psnr = sum(-10 * math.log10(max(r[1] / r[2], 1e-12)) for r in rows) / max(len(rows), 1)
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


def _ranged(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return value

    return parse


def _task_error(e: Exception) -> str:
    """A task's failure in one line: the library's message, or what Ray says of a dead worker
    or node once its retries are spent."""
    cause = getattr(e, "cause", None)
    text = str(cause) if cause is not None else str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rvq.ray", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
        s.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: all)")
        s.add_argument("--cpus-per-task", type=float, default=1.0)
        s.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per task, on GPU nodes")
        s.add_argument("--retries", type=int, default=3, help="retries of a task whose worker or node died")
        s.add_argument("--model", help="a model folder or a built-in model's name (default: the default model, or the built-in model an archive cites)")
        s.add_argument("--backend", default="auto", choices=["auto", "cpu", "wgpu"])
        s.add_argument("--shards", type=_ranged(1, 1_000_000), default=8)

    e = sub.add_parser("encode", help="encode files into one archive, a shard per task")
    common(e)
    e.add_argument("inputs", nargs="*", help="PNG, JPEG or WebP files, or folders")
    e.add_argument("--files-from", help="also the files and folders listed here, one per line")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--work-dir", required=True)
    e.add_argument("--force", action="store_true", help="overwrite the output")
    e.add_argument("--skip-bad", action="store_true", help="leave unreadable files out instead of stopping")
    e.add_argument("--quality", type=_ranged(0, 100))
    e.add_argument("--psnr", type=float)
    e.add_argument("--codebooks", type=_ranged(1, 64))
    e.add_argument("--effort", type=_ranged(0, 5))
    e.add_argument("--beam", type=_ranged(1, 64))
    e.add_argument("--refine", type=_ranged(1, 64))
    e.add_argument("--fit", type=_ranged(0, 1000), help="steps fitting the latents to the decoder (as rvq encode --fit)")
    e.add_argument("--no-entropy", action="store_true")
    e.add_argument("--no-filter", action="store_true", help="no restoration filters (as rvq encode --no-filter)")
    e.add_argument("--no-half", action="store_true", help="every image at its own size (as rvq encode --no-half)")
    e.add_argument("--no-names", action="store_true")
    e.add_argument("--strict", action="store_true", help="refuse images with an alpha channel")

    d = sub.add_parser("decode", help="decode an archive to PNGs, blocks spread over tasks")
    common(d)
    d.add_argument("archive")
    d.add_argument("-o", "--output", required=True, help="the folder to write the PNGs into")
    keep = d.add_mutually_exclusive_group()
    keep.add_argument("--force", action="store_true", help="overwrite existing files")
    keep.add_argument(
        "--resume",
        action="store_true",
        help="keep the files that exist (an interrupted decode's: each was written whole) and decode only the blocks with files missing",
    )

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
    except (JobError, rvq.RvqError, OSError, ValueError) as e:
        print(f"rvq.ray: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
