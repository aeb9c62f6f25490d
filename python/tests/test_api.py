"""The Python API against the `rvq` command: the same bytes for the same pixels, names and
options; the same pixels back; errors as exceptions with the library's one line."""

import pickle

import numpy as np
import pytest

import rvq
from conftest import read_png, run_rvq, sample_files


def files_and_names(folder):
    files = sorted(p for p in folder.rglob("*.png"))
    return files, [p.relative_to(folder).as_posix() for p in files]


@pytest.mark.parametrize(
    "flags, kwargs",
    [
        ([], {}),
        (["--quality", "40"], {"quality": 40}),
        (["--psnr", "30", "--codebooks", "6"], {"psnr": 30.0, "codebooks": 6}),
        (["--codebooks", "3", "--beam", "1", "--refine", "1"], {"codebooks": 3, "beam": 1, "refine": 1}),
        (["--quality", "40", "--effort", "1"], {"quality": 40, "effort": 1}),
        (["--quality", "40", "--no-filter"], {"quality": 40, "filter": False}),
        (["--quality", "10"], {"quality": 10}),
        (["--quality", "10", "--no-half"], {"quality": 10, "half_size": False}),
        (["--quality", "40", "--fit", "3"], {"quality": 40, "fit": 3}),
    ],
)
def test_encode_writes_the_bytes_the_command_writes(photos, tmp_path, flags, kwargs):
    files, names = files_and_names(photos)
    out = tmp_path / "cli.rvq"
    run_rvq("encode", "--backend", "cpu", *flags, "-o", str(out), str(photos))
    images = [read_png(f) for f in files]
    ours = rvq.encode(images, names=names, backend="cpu", **kwargs)
    assert ours == out.read_bytes()
    if "fit" in kwargs:
        # Fitted latents change the indices: an encode that dropped the option would differ.
        plain = {k: v for k, v in kwargs.items() if k != "fit"}
        assert rvq.encode(images, names=names, backend="cpu", **plain) != ours


@pytest.mark.parametrize("flags", [[], ["--quality", "10"]])
def test_decode_gives_the_pixels_the_command_writes(photos, tmp_path, flags):
    # At quality 10 the larger samples are coded at half size (format version 4).
    archive = tmp_path / "a.rvq"
    run_rvq("encode", "--backend", "cpu", *flags, "-o", str(archive), str(photos))
    assert archive.read_bytes()[4] == (4 if flags else 3)
    run_rvq("decode", "--backend", "cpu", "-o", str(tmp_path / "out"), str(archive))
    decoded = rvq.decode(archive, backend="cpu")
    names = rvq.open(archive, backend="cpu").names
    assert len(decoded) == len(names) == 12
    for name, image in zip(names, decoded):
        assert image.dtype == np.uint8 and image.ndim == 3
        assert np.array_equal(image, read_png(tmp_path / "out" / name)), name


def test_batches_gray_and_alpha_are_taken_as_the_command_takes_them():
    rgb = read_png(sorted(__import__("conftest").SAMPLES.glob("*.png"))[0])
    stacked = np.stack([rgb, rgb[::-1].copy()])
    assert rvq.encode(stacked, backend="cpu") == rvq.encode(list(stacked), backend="cpu")
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert rvq.encode([rgba], backend="cpu") == rvq.encode([rgb], backend="cpu")
    gray = rgb[:, :, 1].copy()
    assert rvq.encode([gray], backend="cpu") == rvq.encode([np.stack([gray] * 3, axis=2)], backend="cpu")
    # Strided views are read in their logical order.
    assert rvq.encode([rgb[:, ::-1]], backend="cpu") == rvq.encode([rgb[:, ::-1].copy()], backend="cpu")


def test_an_archive_opens_lazily_indexes_iterates_and_pickles_by_path(photos, tmp_path, monkeypatch):
    files, names = files_and_names(photos)
    images = [read_png(f) for f in files]
    path = tmp_path / "a.rvq"
    path.write_bytes(rvq.encode(images, names=names, backend="cpu"))
    archive = rvq.open(path, backend="cpu")
    assert len(archive) == 12 and archive.names == names
    whole = rvq.decode(path, backend="cpu")
    assert all(np.array_equal(a, b) for a, b in zip(archive, whole))
    assert np.array_equal(archive[-1], whole[-1]) and np.array_equal(archive[3], whole[3])
    with pytest.raises(IndexError):
        archive[12]
    assert [n for n, _ in archive.items()] == names
    again = pickle.loads(pickle.dumps(archive))
    assert again._path == str(path) and len(again) == 12
    assert np.array_equal(again[5], whole[5])
    # Opened by a relative path, it pickles by the absolute one: a worker elsewhere finds it.
    monkeypatch.chdir(tmp_path)
    relative = pickle.dumps(rvq.open("a.rvq", backend="cpu"))
    monkeypatch.chdir(photos)
    assert np.array_equal(pickle.loads(relative)[5], whole[5])
    info = archive.info()
    cli = __import__("json").loads(run_rvq("info", "--json", str(path)).stdout)
    assert info == {k: v for k, v in cli.items() if k != "ratio_vs_inputs"}


def test_blocks_read_from_a_file_skip_whole_blocks_and_check_them(tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(130)]
    names = [f"{i}.png" for i in range(130)]
    path = tmp_path / "b.rvq"
    path.write_bytes(rvq.encode(images, names=names, backend="cpu", codebooks=1))
    codec = rvq.Codec(backend="cpu")
    whole = [item for block in codec._inner.blocks(path.read_bytes()) for item in block]
    for skip, first in ((0, 0), (1, 64), (2, 128), (3, 130)):
        blocks = codec._inner.blocks_of_file(str(path))
        blocks.skip(skip)
        rest = [item for block in blocks for item in block]
        assert [n for n, _ in rest] == names[first:]
        assert all(a == b for a, b in zip(rest, whole[first:]))
    # A skipped block is not decoded, but its checksum is checked.
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 4] ^= 1
    (tmp_path / "d.rvq").write_bytes(bytes(damaged))
    with pytest.raises(rvq.FormatError, match="checksum"):
        codec._inner.blocks_of_file(str(tmp_path / "d.rvq")).skip(2)
    with pytest.raises(rvq.InputError, match="missing.rvq"):
        codec._inner.blocks_of_file(str(tmp_path / "missing.rvq"))


def test_an_archive_opened_from_a_file_reads_it_as_it_goes(tmp_path):
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (8, 8 + i % 5, 3), dtype=np.uint8) for i in range(150)]
    names = [f"{i}.png" for i in range(150)]
    data = rvq.encode(images, names=names, backend="cpu", codebooks=2)
    path = tmp_path / "c.rvq"
    path.write_bytes(data)
    # Three blocks: a file is indexed, iterated and described as the same bytes in memory are.
    from_file, in_memory = rvq.open(path, backend="cpu"), rvq.open(data, backend="cpu")
    assert from_file.info() == in_memory.info() == rvq.info(path) == rvq.info(data)
    assert from_file.names == names
    for i in (0, 63, 64, 100, 128, 149, -1):
        assert np.array_equal(from_file[i], in_memory[i]), i
    assert all(np.array_equal(a, b) for a, b in zip(from_file, in_memory))
    assert len(list(from_file)) == 150
    # Each use reads the file then: damage to its last block is found by an image of that
    # block, named by the path, while the images before it still decode.
    damaged = bytearray(data)
    damaged[-10] ^= 1
    path.write_bytes(bytes(damaged))
    assert np.array_equal(from_file[5], in_memory[5])
    with pytest.raises(rvq.FormatError, match="c.rvq: .*checksum"):
        from_file[140]
    with pytest.raises(rvq.FormatError, match="c.rvq: .*checksum"):
        rvq.info(path)


def test_merge_and_truncate_match_the_command(photos, tmp_path):
    files, names = files_and_names(photos)
    images = [read_png(f) for f in files]
    whole = rvq.encode(images, names=names, backend="cpu")
    parts = [rvq.encode(images[:5], names=names[:5], backend="cpu"), rvq.encode(images[5:], names=names[5:], backend="cpu")]
    assert rvq.merge(parts) == whole
    # Into a file, from paths and bytes alike: the same bytes, streamed.
    (tmp_path / "a.rvq").write_bytes(parts[0])
    out = tmp_path / "m.rvq"
    assert rvq.merge([tmp_path / "a.rvq", parts[1]], out) == len(whole)
    assert out.read_bytes() == whole
    # An existing file is replaced only when asked; a damaged part is named, nothing written.
    with pytest.raises(rvq.InputError, match="already exists"):
        rvq.merge([parts[0]], out)
    assert out.read_bytes() == whole
    damaged = bytearray(parts[1])
    damaged[-3] ^= 0x10
    (tmp_path / "b.rvq").write_bytes(bytes(damaged))
    with pytest.raises(rvq.FormatError, match="b.rvq: "):
        rvq.merge([tmp_path / "a.rvq", tmp_path / "b.rvq"], out, force=True)
    assert out.read_bytes() == whole
    with pytest.raises(rvq.InputError, match="earlier image"):
        rvq.merge([tmp_path / "a.rvq", tmp_path / "a.rvq"], tmp_path / "n.rvq")
    with pytest.raises(rvq.InputError, match="missing.rvq"):
        rvq.merge([tmp_path / "missing.rvq"], tmp_path / "n.rvq")
    # Bytes are named by their place; no part is an argument error, as in memory.
    with pytest.raises(rvq.FormatError, match="^archive 1 of the merge: "):
        rvq.merge([parts[0], bytes(damaged)], tmp_path / "n.rvq")
    with pytest.raises(rvq.ArgumentError):
        rvq.merge([], tmp_path / "n.rvq")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.rvq", "b.rvq", "m.rvq"]
    (tmp_path / "w.rvq").write_bytes(whole)
    run_rvq("truncate", "--codebooks", "2", str(tmp_path / "w.rvq"), str(tmp_path / "t.rvq"))
    assert rvq.truncate(whole, 2) == (tmp_path / "t.rvq").read_bytes()


def test_the_photo_model_is_chosen_by_name_and_decode_finds_it(tmp_path, monkeypatch):
    image = read_png(sample_files()[0])
    photo = rvq.Codec("photo", backend="cpu")
    assert photo.fingerprint != rvq.Codec(backend="cpu").fingerprint
    archive = photo.encode([image], codebooks=2)
    assert rvq.info(archive)["fingerprint"] == photo.fingerprint
    # rvq.decode takes the built-in model the archive cites; the default codec refuses it.
    ours = photo.decode(archive)[0]
    assert np.array_equal(rvq.decode(archive, backend="cpu")[0], ours)
    assert np.array_equal(rvq.open(archive, backend="cpu")[0], ours)
    # A folder named as the built-in model does not stand in for the model an archive cites.
    (tmp_path / "photo").mkdir()
    monkeypatch.chdir(tmp_path)
    rvq._codecs.clear()
    assert np.array_equal(rvq.decode(archive, backend="cpu")[0], ours)
    assert np.array_equal(pickle.loads(pickle.dumps(rvq.open(archive, backend="cpu")))[0], ours)
    assert rvq.built_in_model(photo.fingerprint) == "photo"
    assert rvq.built_in_model("ab" * 16) is None
    with pytest.raises(rvq.ModelMismatchError):
        rvq.Codec(backend="cpu").decode(archive)
    with pytest.raises(rvq.InputError, match="no such model folder, nor a built-in model"):
        rvq.Codec("phot", backend="cpu")


def test_errors_are_exceptions_with_one_line():
    with pytest.raises(rvq.FormatError) as bad:
        rvq.decode(b"RVQA not really", backend="cpu")
    assert "\n" not in str(bad.value) and str(bad.value)
    assert issubclass(rvq.FormatError, rvq.RvqError)
    with pytest.raises(rvq.InputError, match="shape"):
        rvq.encode([np.zeros((4, 4, 2), np.uint8)], backend="cpu")
    # One (H, W, 3) array is refused, not taken as H gray images of width 3.
    with pytest.raises(rvq.InputError, match="pass a list"):
        rvq.encode(np.zeros((8, 8, 3), np.uint8), backend="cpu")
    # A missing file is an RvqError too, naming the path.
    for call in (rvq.decode, rvq.info, rvq.open):
        with pytest.raises(rvq.InputError, match="no-such.rvq"):
            call("no-such.rvq")
    # A name the format cannot store is refused before the images are encoded.
    with pytest.raises(rvq.InputError, match="cannot store the name"):
        rvq.encode([np.zeros((4, 4, 3), np.uint8)], names=["a\\b.png"], backend="cpu")
    with pytest.raises(rvq.InputError, match="dtype"):
        rvq.encode([np.zeros((4, 4, 3), np.float32)], backend="cpu")
    with pytest.raises(rvq.InputError, match="2 names for 1 images"):
        rvq.encode([np.zeros((4, 4, 3), np.uint8)], names=["a", "b"], backend="cpu")
    with pytest.raises(rvq.InputError, match="duplicate|twice|stored as"):
        rvq.encode([np.zeros((4, 4, 3), np.uint8)] * 2, names=["a", "a"], backend="cpu")
    with pytest.raises(rvq.ModelMismatchError):
        rvq.encode([np.zeros((4, 4, 3), np.uint8)], codebooks=9, backend="cpu")
    for fit in (-1, 1001):
        with pytest.raises(ValueError, match="fit"):
            rvq.encode([np.zeros((4, 4, 3), np.uint8)], fit=fit, backend="cpu")
    with pytest.raises(ValueError):
        rvq.Codec(backend="tpu")


def test_arguments_out_of_range_are_argument_errors_and_value_errors():
    image = [np.zeros((4, 4, 3), np.uint8)]
    data = rvq.encode(image, codebooks=2, backend="cpu")
    # Negative integers too, which a parameter typed unsigned would raise as OverflowError.
    for options, needle in [
        ({"psnr": -1.0}, "PSNR -1 dB"),
        ({"psnr": float("nan")}, "PSNR NaN dB"),
        ({"quality": 101}, "quality 101"),
        ({"quality": -1}, "quality -1"),
        ({"quality": 50, "psnr": 30.0}, "not both"),
        ({"beam": -1}, "beam -1"),
        ({"refine": 0}, "refine 0"),
        ({"codebooks": -1}, "codebooks -1"),
        ({"effort": 256}, "effort 256: expected 0 to 5"),
        ({"codebooks": 0}, "codebooks 0: expected at least 1"),
        ({"effort": 6}, "effort"),
        ({"fit": -1}, "fit -1"),
    ]:
        with pytest.raises(rvq.ArgumentError, match=needle) as caught:
            rvq.encode(image, backend="cpu", **options)
        assert isinstance(caught.value, rvq.RvqError) and isinstance(caught.value, ValueError)
    for cut in (0, 3, -1):
        with pytest.raises(rvq.ArgumentError, match="codebooks"):
            rvq.truncate(data, cut)
    with pytest.raises(rvq.ArgumentError, match="ask for 1..=2"):
        rvq.truncate(data, 0)
    with pytest.raises(rvq.ArgumentError, match="nothing to merge"):
        rvq.merge([])
    with pytest.raises(rvq.ArgumentError, match="tpu"):
        rvq.Codec(backend="tpu")
    # A merge of two models' archives is a model mismatch; of two images of one name, the input.
    other = rvq.Codec("photo", "cpu").encode(image, codebooks=2)
    with pytest.raises(rvq.ModelMismatchError, match="fingerprint"):
        rvq.merge([data, other])
    named = rvq.encode(image, names=["a.png"], codebooks=2, backend="cpu")
    with pytest.raises(rvq.InputError, match="a.png"):
        rvq.merge([named, named])
