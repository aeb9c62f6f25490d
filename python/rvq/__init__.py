"""rvq: the rvq image codec for Python.

Images are NumPy ``uint8`` arrays of shape (H, W, 3) (also (H, W) gray and (H, W, 4), whose
alpha is dropped as ``rvq encode`` drops it), in a list or one (N, H, W[, C]) array (gray
images of width 3 or 4 in a list: as one array they would read as a colour image); archives are
``bytes``, the same bytes the ``rvq`` command writes for the same pixels, names and options
on the same backend.

    import rvq
    data = rvq.encode(images, names=["a.png", "b.png"])      # quality 90, as `rvq encode`
    back = rvq.decode(data)                                  # list of (H, W, 3) arrays
    archive = rvq.open("photos.rvq")                         # decoded a block at a time
    for image in archive: ...

A :class:`Codec` holds a loaded model for callers that encode many batches; the module's
functions share one per backend and model (they encode with the default model, and decode
with the built-in model an archive cites). Errors are :class:`RvqError` and its subclasses, carrying
the library's one-line message; an argument out of its range is :class:`ArgumentError`, which is
also a ``ValueError``. Heavy calls release the GIL. ``python -m rvq.ray`` runs
encode, decode and eval over a Ray cluster (see ``rvq.ray``).
"""

from __future__ import annotations

import builtins
import json
import operator
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _rvq
from ._rvq import ArgumentError, FormatError, InputError, ModelMismatchError, RvqError

__all__ = [
    "Archive",
    "ArgumentError",
    "Codec",
    "FormatError",
    "InputError",
    "ModelMismatchError",
    "RvqError",
    "built_in_model",
    "decode",
    "encode",
    "info",
    "merge",
    "open",
    "truncate",
]

PathLike = Union[str, "os.PathLike[str]"]
Source = Union[PathLike, bytes, bytearray, memoryview]


class Codec:
    """A model loaded on a backend ("auto", "cpu" or "wgpu"); ``model`` is a model folder,
    the name of a model built into rvq ("default", or "photo" for photographs), or None for
    the default. Calls on one codec run one at a time (each releases
    the GIL while it works); threads that want to encode in parallel each make their own."""

    def __init__(self, model: Optional[PathLike] = None, backend: str = "auto", *, _built_in: bool = False) -> None:
        self._model = None if model is None else os.fspath(model)
        if not _built_in:
            self._model = _model_location(self._model)
        self._asked = backend
        # _built_in: ``model`` names a built-in model, never a folder (an archive's cited model).
        self._inner = _rvq.Codec(self._model, backend, _built_in)

    @property
    def backend(self) -> str:
        """The backend the model runs on: "cpu" or "wgpu"."""
        return self._inner.backend

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint (hex), which its archives carry."""
        return self._inner.fingerprint

    def encode(
        self,
        images: Union[Sequence[np.ndarray], np.ndarray],
        *,
        names: Optional[Sequence[str]] = None,
        quality: Optional[int] = None,
        psnr: Optional[float] = None,
        codebooks: Optional[int] = None,
        effort: Optional[int] = None,
        beam: Optional[int] = None,
        refine: Optional[int] = None,
        fit: Optional[int] = None,
        entropy: bool = True,
        filter: bool = True,
        half_size: bool = True,
    ) -> bytes:
        """The archive of ``images``. The rate is chosen as ``rvq encode`` chooses it: a
        ``quality`` (0-100; 90 when neither it nor ``psnr`` nor ``codebooks`` is given), a
        ``psnr`` target in dB, or with ``codebooks`` alone every cell at that many codebooks
        (with a quality or target, ``codebooks`` caps them). ``names`` are stored with the
        images (without them the archive stores none). ``effort`` (0-5, 4 when not given) is
        how hard the encoder searches (``--effort``); ``beam`` and ``refine`` override its
        beam width and refinement (``--beam``, ``--refine``), ``fit`` its steps fitting the
        latents to the decoder (``--fit``; 0-1000). ``filter=False`` fits no
        restoration filters (``--no-filter``): the archive is then format version 2.
        ``half_size=False`` codes every image at its own size (``--no-half``): below quality
        60 and under a ``psnr`` target the encoder otherwise also tries images of 16,384
        pixels or more at half size (format version 4)."""
        return self._inner.encode(
            _pixels(images),
            names=None if names is None else list(names),
            quality=quality,
            psnr=psnr,
            codebooks=codebooks,
            effort=effort,
            beam=beam,
            refine=refine,
            fit=fit,
            entropy=entropy,
            filter=filter,
            half_size=half_size,
        )

    def decode(self, data: Source) -> List[np.ndarray]:
        """Every image of the archive ``data`` (bytes, or a path)."""
        return [_array(image) for image in self._inner.decode(_read(data))]

    def open(self, source: Source) -> "Archive":
        """The archive at ``source`` (a path, or bytes), decoded lazily."""
        return Archive(source, codec=self)


_codecs: Dict[Tuple[Optional[str], str], Codec] = {}
_codecs_lock = threading.Lock()


def _model_location(model: Optional[str]) -> Optional[str]:
    """A model folder made absolute, so that it is the same folder wherever it is pickled to
    (a worker has its own working folder); a built-in model's name (no such path) as it is."""
    return os.path.abspath(model) if model is not None and os.path.exists(model) else model


def _pixels(images: Union[Sequence[np.ndarray], np.ndarray]) -> List[tuple]:
    """Each image as (bytes, height, width, channels) for the extension module."""
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[2] in (3, 4):
        # Iterated, one colour image would be taken as rows of gray ones.
        raise InputError(
            f"one array of shape {images.shape} is one colour image or {images.shape[0]} gray "
            "ones: pass a list of images, or an (N, H, W, C) array"
        )
    out = []
    for i, image in enumerate(images):
        a = np.asarray(image)
        if a.dtype != np.uint8:
            raise InputError(f"image {i}: dtype {a.dtype}, expected uint8")
        if a.ndim == 2:
            channels = 1
        elif a.ndim == 3 and a.shape[2] in (3, 4):
            channels = a.shape[2]
        else:
            raise InputError(f"image {i}: shape {a.shape}, expected (H, W), (H, W, 3) or (H, W, 4)")
        out.append((np.ascontiguousarray(a).tobytes(), a.shape[0], a.shape[1], channels))
    return out


def _array(image: tuple) -> np.ndarray:
    """An image from the extension module as an (H, W, 3) array over its bytes (no copy;
    read-only, as the bytes are: ``.copy()`` for a writable one)."""
    pixels, height, width = image
    return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)


def _codec(backend: str, built_in: Optional[str] = None) -> Codec:
    """The module's codec of the default model, or of the built-in model called ``built_in``."""
    built_in = None if built_in == "default" else built_in  # one codec of the default model
    with _codecs_lock:
        if (built_in, backend) not in _codecs:
            _codecs[(built_in, backend)] = Codec(built_in, backend, _built_in=built_in is not None)
        return _codecs[(built_in, backend)]


def _read(data: Source) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    path = os.fspath(data)
    try:
        with builtins.open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from e



def encode(
    images: Union[Sequence[np.ndarray], np.ndarray],
    *,
    quality: Optional[int] = None,
    psnr: Optional[float] = None,
    codebooks: Optional[int] = None,
    names: Optional[Sequence[str]] = None,
    effort: Optional[int] = None,
    beam: Optional[int] = None,
    refine: Optional[int] = None,
    fit: Optional[int] = None,
    entropy: bool = True,
    filter: bool = True,
    half_size: bool = True,
    backend: str = "auto",
) -> bytes:
    """The archive of ``images`` with the built-in model (see :meth:`Codec.encode`)."""
    return _codec(backend).encode(
        images,
        names=names,
        quality=quality,
        psnr=psnr,
        codebooks=codebooks,
        effort=effort,
        beam=beam,
        refine=refine,
        fit=fit,
        entropy=entropy,
        filter=filter,
        half_size=half_size,
    )


def decode(data: Source, *, backend: str = "auto") -> List[np.ndarray]:
    """Every image of the archive ``data`` (bytes, or a path), with the built-in model whose
    fingerprint it cites ("default" or "photo"; the default for any other, which refuses it)."""
    raw = _read(data)
    try:
        cited = built_in_model(_rvq.archive_fingerprint(raw))  # the header alone, not info()
    except RvqError:
        cited = None  # decoding says what is wrong with it
    return _codec(backend, cited).decode(raw)


def built_in_model(fingerprint: str) -> Optional[str]:
    """The name of the model built into rvq ("default" or "photo") whose fingerprint is
    ``fingerprint`` (hex, as :func:`info` reports an archive's), or None."""
    return _rvq.built_in_model(fingerprint)


def open(  # noqa: A001 - rvq.open, as gzip.open and PIL.Image.open
    source: Source, *, model: Optional[PathLike] = None, backend: str = "auto"
) -> "Archive":
    """The archive at ``source`` (a path, or bytes), decoded a block at a time; without
    ``model``, by the built-in model whose fingerprint it cites."""
    codec = None if model is None else Codec(model, backend)
    return Archive(source, codec=codec, _spec=(None if codec is None else codec._model, backend))


def merge(parts: Sequence[Source], out: Optional[PathLike] = None, *, force: bool = False) -> Union[bytes, int]:
    """One archive of ``parts`` (archives of the same model and settings), in order: what
    ``rvq merge`` writes; shards of one encode merge into that encode's archive. Returns
    its bytes; or, given ``out``, writes it to that file (whole or not at all; an existing
    file only with ``force=True``) and returns its size, reading the parts given as paths
    a block at a time, so that the merge holds about a block rather than the archives."""
    if out is None:
        return _rvq.merge([_read(p) for p in parts])
    given = [bytes(p) if isinstance(p, (bytes, bytearray, memoryview)) else os.fspath(p) for p in parts]
    return _rvq.merge_into(given, os.fspath(out), force)


def truncate(data: Source, codebooks: int) -> bytes:
    """The archive cut to its first ``codebooks`` codebooks: what ``rvq truncate`` writes."""
    return _rvq.truncate(_read(data), codebooks)


def info(data: Source) -> Dict[str, Any]:
    """What ``rvq info --json`` reports of the archive (no model is loaded); a file is read a
    block at a time, not held whole."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return json.loads(_rvq.archive_info(bytes(data)))
    return json.loads(_rvq.archive_info_of_file(os.fspath(data)))


BLOCK = 64  # images per block of a version-2 archive (docs/FORMAT.md)


class Archive:
    """An archive's images, decoded as they are asked for: ``len``, indexing (that image
    alone decoded), iteration (a block at a time, fewer images where they are huge). ``names`` holds the stored names (None
    where the archive stores none). Opened from a path, it pickles by that path, so it can
    be sent to workers, which open it again, and the file is read as it is used, a block at
    a time, never held whole: indexing reads the file up to the image's block (iterate to
    read it all once)."""

    def __init__(self, source: Source, codec: Optional[Codec], _spec: Any = None) -> None:
        # Absolute, so that it pickles to the same file on a worker in another folder.
        self._path = None if isinstance(source, (bytes, bytearray, memoryview)) else os.path.abspath(source)
        self._data = None if self._path is not None else bytes(source)
        if _spec is None:
            _spec = (None, "auto") if codec is None else (codec._model, codec._asked)
        self._spec = _spec
        # One read of every record (and checksum), kept as JSON for info().
        self._info = _rvq.archive_info(self._data) if self._data is not None else _rvq.archive_info_of_file(self._path)
        facts = json.loads(self._info)
        # Without a codec, the built-in model the archive cites (the default refuses others).
        self._codec = codec or _codec(self._spec[1], built_in_model(facts["fingerprint"]))
        self._version = facts["version"]
        self._count = facts["images"]
        self._names: List[Optional[str]] = [e["name"] for e in facts["entries"]]

    def __len__(self) -> int:
        return self._count

    @property
    def names(self) -> List[Optional[str]]:
        """Each image's stored name, or None."""
        return list(self._names)

    def info(self) -> Dict[str, Any]:
        """What ``rvq info --json`` reports of this archive."""
        return json.loads(self._info)

    def __getitem__(self, index: int) -> np.ndarray:
        index = operator.index(index)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"image {index} of an archive of {self._count}")
        if self._data is None:
            return _array(self._codec._inner.decode_image_of_file(self._path, index, self._count)[1])
        return _array(self._codec._inner.decode_image(self._data, index)[1])

    def _blocks(self):
        if self._data is None:
            return self._codec._inner.blocks_of_file(self._path)
        return self._codec._inner.blocks(self._data)

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self._blocks():
            for _, image in block:
                yield _array(image)

    def items(self) -> Iterator[tuple]:
        """(name, image) pairs, a block at a time."""
        for block in self._blocks():
            for name, image in block:
                yield name, _array(image)

    def __reduce__(self):
        if self._path is None:
            return (_archive_from_bytes, (self._data,) + tuple(self._spec))
        return (_archive_from_path, (self._path,) + tuple(self._spec))

    def __repr__(self) -> str:
        where = self._path if self._path is not None else f"{len(self._data)} bytes"
        return f"<rvq.Archive {where}: {self._count} images>"


def _archive_from_path(path: str, model: Optional[str], backend: str) -> Archive:
    return open(path, model=model, backend=backend)


def _archive_from_bytes(data: bytes, model: Optional[str], backend: str) -> Archive:
    return open(data, model=model, backend=backend)
