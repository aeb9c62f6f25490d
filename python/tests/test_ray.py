"""`python -m rvq.ray` on a local Ray cluster of two nodes with one CPU each: sharded encodes
equal one `rvq encode`, reruns redo only what is missing, a killed worker is retried, bad
manifests and bad inputs are refused. Bounded: a dozen small images, one cluster per module."""

import os
import shutil

import pytest

from conftest import run_rvq

ray = pytest.importorskip("ray")
import rvq.ray as job  # noqa: E402

# The second shard of a run with two or more dies on its first attempt (see encode_shard).
os.environ["RVQ_RAY_TEST_KILL_ONCE"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def single(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "single.rvq"
    run_rvq("encode", "--backend", "cpu", "-o", str(out), str(photos))
    return out.read_bytes()


@pytest.fixture(scope="module")
def single_many(many, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "many.rvq"
    run_rvq("encode", "--backend", "cpu", "-o", str(out), str(many))
    return out.read_bytes()


def encode(photos, work, out, *extra):
    return job.main(["encode", "--backend", "cpu", "--work-dir", str(work), "-o", str(out), *extra, str(photos)])


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_shards_merge_into_the_single_encode(cluster, many, single_many, tmp_path, shards):
    out = tmp_path / "d.rvq"
    assert encode(many, tmp_path / "w", out, "--shards", str(shards)) == 0
    assert out.read_bytes() == single_many
    parts = sorted(p.name for p in (tmp_path / "w" / "parts").iterdir())
    expected = [f"part-{i:05d}.rvq" for i in range(shards)]
    # No stray temporary parts, even where a worker was killed mid-shard and retried.
    assert parts == sorted(expected + ([".killed-1"] if shards >= 3 else []))


@pytest.mark.parametrize("flags", [[], ["--no-half"], ["--no-filter"], ["--fit", "3"]])
def test_shards_at_a_low_quality_take_the_encoders_switches(cluster, photos, tmp_path, flags):
    # At quality 10 the astronaut (128×128) is coded at half size (format version 4) unless a
    # switch turns half sizes off (version 3) or the filters they need (version 2): each sharded
    # archive is the single encode with the same flags.
    single = tmp_path / "single.rvq"
    run_rvq("encode", "--backend", "cpu", "--quality", "10", *flags, "-o", str(single), str(photos))
    out = tmp_path / "d.rvq"
    assert encode(photos, tmp_path / "w", out, "--shards", "2", "--quality", "10", *flags) == 0
    assert out.read_bytes() == single.read_bytes()
    versions = {(): 4, ("--no-half",): 3, ("--no-filter",): 2, ("--fit", "3"): 4}
    assert out.read_bytes()[4] == versions[tuple(flags)]
    if "--fit" in flags:
        # Fitted latents change the indices: a job that dropped the switch would differ.
        plain = tmp_path / "plain.rvq"
        run_rvq("encode", "--backend", "cpu", "--quality", "10", "-o", str(plain), str(photos))
        assert plain.read_bytes() != single.read_bytes()


def test_a_rerun_redoes_only_the_missing_part(cluster, many, single_many, tmp_path):
    work, out = tmp_path / "w", tmp_path / "d.rvq"
    assert encode(many, work, out, "--shards", "3") == 0
    parts = work / "parts"
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.rvq")}
    (parts / "part-00002.rvq").unlink()
    (parts / "part-00000.rvq").write_bytes(b"damaged")
    assert encode(many, work, out, "--shards", "3", "--force") == 0
    after = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.rvq")}
    assert after["part-00001.rvq"] == before["part-00001.rvq"]
    assert after["part-00000.rvq"] != before["part-00000.rvq"]
    assert out.read_bytes() == single_many
    # Three blocks in three shards: one block a part, each part a whole block but the last.
    assert [rvq_count(parts / f"part-{i:05d}.rvq") for i in range(3)] == [64, 64, 22]


def test_a_mismatched_manifest_and_an_existing_output_are_refused(cluster, photos, tmp_path, capsys):
    work, out = tmp_path / "w", tmp_path / "d.rvq"
    assert encode(photos, work, out, "--shards", "2") == 0
    assert encode(photos, work, tmp_path / "e.rvq", "--shards", "2", "--quality", "50") == 1
    err = capsys.readouterr().err
    assert "made for another job" in err and "options" in err
    assert encode(photos, work, out, "--shards", "2") == 1
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "e.rvq").exists()


def test_parts_left_without_their_manifest_are_not_merged_and_other_files_are_kept(
    cluster, photos, single, tmp_path
):
    # A job at another quality, whose manifest was then lost: its parts validate (same model,
    # names and counts) but hold other indices, so a new job must not merge them.
    work, out = tmp_path / "w", tmp_path / "d.rvq"
    assert encode(photos, work, tmp_path / "other.rvq", "--shards", "2", "--quality", "50") == 0
    (work / "manifest.json").unlink()
    notes = work / "parts" / "notes.txt"
    notes.write_text("mine")
    assert encode(photos, work, out, "--shards", "2") == 0
    assert out.read_bytes() == single
    assert notes.read_text() == "mine"


def test_a_corrupt_png_is_named_or_skipped(cluster, photos, tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(photos, folder)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    out = tmp_path / "d.rvq"
    assert encode(folder, tmp_path / "w", out, "--shards", "2") == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and len(err.strip().splitlines()) <= 2, err
    assert not out.exists()
    assert encode(folder, tmp_path / "w2", out, "--shards", "2", "--skip-bad") == 0
    assert "bad.png: skipped" in capsys.readouterr().err
    assert len(rvq_info(out)) == 12


def test_symbolic_links_are_stored_under_their_own_names(cluster, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "link.png").symlink_to(photos / "coffee-32.png")
    (folder / "linked").symlink_to(photos / "sub", target_is_directory=True)
    out, cli = tmp_path / "d.rvq", tmp_path / "cli.rvq"
    assert encode(folder, tmp_path / "w", out, "--shards", "2") == 0
    run_rvq("encode", "--backend", "cpu", "-o", str(cli), str(folder))
    assert out.read_bytes() == cli.read_bytes()
    assert "link.png" in rvq_info(out)


def test_decode_targets_are_named_and_refused_as_rvq_decode_does():
    from pathlib import Path

    import rvq
    from rvq import _rvq

    case = [Path(t) for t in _rvq.decode_targets("o", ["A.png", "a"], fold_case=False)]
    assert case == [Path("o/A.png"), Path("o/a.png")]
    with pytest.raises(rvq.InputError, match='images "A.png" and "a" would both be written to o/A.png'):
        _rvq.decode_targets("o", ["A.png", "a"], fold_case=True)
    with pytest.raises(rvq.InputError, match="written inside o/d.png"):
        _rvq.decode_targets("o", ["d.png", "d.png/e.png"], fold_case=False)
    with pytest.raises(rvq.InputError, match="not a plain relative path"):
        _rvq.decode_targets("o", ["../x"])
    named = _rvq.decode_targets("o", [".png", "a.PNG", None])
    assert [Path(t) for t in named] == [Path("o/.png.png"), Path("o/a.PNG"), Path("o/image-000002.png")]


def test_a_decode_whose_targets_clash_writes_nothing(cluster, photos, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, name in ((a, "x.jpg"), (b, "x.jpg.png")):
        folder.mkdir()
        shutil.copy(photos / "coffee-32.png", folder / name)
    archive, out = tmp_path / "c.rvq", tmp_path / "out"
    run_rvq("encode", "--backend", "cpu", "-o", str(archive), str(a), str(b))
    assert job.main(["decode", "--backend", "cpu", "--shards", "2", "-o", str(out), str(archive)]) == 1
    assert 'images "x.jpg" and "x.jpg.png" would both be written to' in capsys.readouterr().err
    assert not out.exists()


def test_a_decode_that_cannot_write_a_target_writes_nothing(cluster, photos, tmp_path, capsys):
    # "sub/…" needs out/sub as a folder, and a file is there; a folder stands where a.png goes.
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(photos / "coffee-32.png", folder / "a.png")
    shutil.copy(photos / "coffee-32.png", folder / "sub" / "b.png")
    archive, out = tmp_path / "c.rvq", tmp_path / "out"
    run_rvq("encode", "--backend", "cpu", "-o", str(archive), str(folder))
    out.mkdir()
    (out / "sub").write_text("a file")
    for force in ([], ["--force"]):
        assert job.main(["decode", "--backend", "cpu", *force, "-o", str(out), str(archive)]) == 1
        assert "sub: not a folder" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == ["sub"]
    (out / "sub").unlink()
    (out / "a.png").mkdir()
    assert job.main(["decode", "--backend", "cpu", "--force", "-o", str(out), str(archive)]) == 1
    assert "a.png: is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def rvq_count(path):
    import rvq

    return rvq.info(path)["images"]


def rvq_info(path):
    import rvq

    return rvq.open(path, backend="cpu").names


def test_decode_spreads_blocks_over_tasks_and_names_by_position(cluster, tmp_path, capsys):
    import numpy as np

    import rvq

    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (8, 8 + i % 5, 3), dtype=np.uint8) for i in range(150)]
    archive = tmp_path / "n.rvq"
    archive.write_bytes(rvq.encode(images, codebooks=2, backend="cpu"))
    opened = rvq.open(archive, backend="cpu")
    whole = rvq.decode(archive, backend="cpu")
    assert np.array_equal(opened[140], whole[140]) and np.array_equal(opened[70], whole[70])
    assert job.main(["decode", "--backend", "cpu", "--shards", "3", "-o", str(tmp_path / "out"), str(archive)]) == 0
    run_rvq("decode", "--backend", "cpu", "-o", str(tmp_path / "cli"), str(archive))
    ours = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert ours == sorted(p.name for p in (tmp_path / "cli").iterdir()) and len(ours) == 150
    for name in ours:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    # Existing files are not overwritten without --force, and nothing is written then: one
    # file removed stays missing, and the others keep their times.
    (tmp_path / "out" / ours[0]).unlink()
    times = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert job.main(["decode", "--backend", "cpu", "-o", str(tmp_path / "out"), str(archive)]) == 1
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == times
    # Resumed, the files that exist are kept and only the shards missing one are decoded:
    # the file removed is written again, the others keep their times.
    capsys.readouterr()
    assert job.main(["decode", "--backend", "cpu", "--shards", "3", "--resume", "-o", str(tmp_path / "out"), str(archive)]) == 0
    assert "1 to decode, 2 already done" in capsys.readouterr().err
    assert (tmp_path / "out" / ours[0]).read_bytes() == (tmp_path / "cli" / ours[0]).read_bytes()
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir() if p.name != ours[0]} == times
    assert job.main(["decode", "--backend", "cpu", "--shards", "3", "--resume", "-o", str(tmp_path / "out"), str(archive)]) == 0
    assert "0 to decode, 3 already done" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        job.main(["decode", "--backend", "cpu", "--resume", "--force", "-o", str(tmp_path / "out"), str(archive)])
    # A forced decode removes only its own temporary files, not other hidden ones.
    (tmp_path / "out" / ".keep.tmp").write_text("mine")
    assert job.main(["decode", "--backend", "cpu", "--force", "-o", str(tmp_path / "out"), str(archive)]) == 0
    assert (tmp_path / "out" / ".keep.tmp").read_text() == "mine"
    # No shards is refused, not a decode of nothing.
    with pytest.raises(SystemExit):
        job.main(["decode", "--backend", "cpu", "--shards", "0", "-o", str(tmp_path / "none"), str(archive)])
    assert not (tmp_path / "none").exists()


def test_decode_and_eval_spread_blocks_over_tasks(cluster, photos, single, tmp_path, capsys):
    archive = tmp_path / "s.rvq"
    archive.write_bytes(single)
    assert job.main(["decode", "--backend", "cpu", "--shards", "2", "-o", str(tmp_path / "out"), str(archive)]) == 0
    run_rvq("decode", "--backend", "cpu", "-o", str(tmp_path / "cli"), str(archive))
    ours = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
    theirs = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*.png"))
    assert ours == theirs and len(ours) == 12
    for p in ours:
        assert (tmp_path / "out" / p).read_bytes() == (tmp_path / "cli" / p).read_bytes(), p
    capsys.readouterr()
    assert job.main(["eval", "--backend", "cpu", "--shards", "2", "--against", str(photos), str(archive)]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["images"] == 12 and 20 < report["psnr_mean"] < 60


def test_eval_reads_a_version_1_archive(cluster, capsys):
    from conftest import ROOT, SAMPLES

    v1 = ROOT / "tests" / "data" / "v1"
    args = ["eval", "--backend", "cpu", "--model", str(v1 / "model"), "--against", str(SAMPLES)]
    assert job.main([*args, str(v1 / "samples32.rvq")]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["images"] == 3 and 20 < report["psnr_mean"] < 60


def test_a_killed_driver_is_rerun_and_keeps_the_parts_it_wrote(cluster, many, single_many, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    work, out = tmp_path / "w", tmp_path / "d.rvq"
    args = ["encode", "--backend", "cpu", "--address", cluster.address, "--shards", "8", "--work-dir", str(work), "-o", str(out), str(many)]
    driver = subprocess.Popen([sys.executable, "-m", "rvq.ray", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = work / "parts"
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None and not list(parts.glob("part-*.rvq")):
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.rvq")}
    assert kept, "the driver was killed before it wrote a part"
    assert job.main(args) == 0
    assert out.read_bytes() == single_many
    for name, mtime in kept.items():
        assert (parts / name).stat().st_mtime_ns == mtime, f"{name} was written again"
    assert not list(parts.glob(".*.tmp"))


def test_a_node_removed_mid_run_has_its_shards_rerun(cluster, many, single_many, tmp_path):
    import threading
    import time

    work, out = tmp_path / "w", tmp_path / "d.rvq"
    worker = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node)
    result = {}
    run = threading.Thread(target=lambda: result.setdefault("code", encode(many, work, out, "--shards", "8")))
    run.start()
    deadline = time.time() + 120
    while time.time() < deadline and run.is_alive() and not list((work / "parts").glob("part-*.rvq")):
        time.sleep(0.02)
    cluster.remove_node(worker)
    run.join(timeout=300)
    cluster.add_node(num_cpus=1)
    assert result.get("code") == 0
    assert out.read_bytes() == single_many
