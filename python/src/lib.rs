//! `rvq._rvq`: the codec for Python. A thin layer over the `rvq` library: a [`Codec`] holds a
//! loaded model, images cross as (pixels, height, width[, channels]) with the pixels in a
//! `bytes` object (the package turns them into NumPy arrays without another copy), archives
//! as `bytes`, and the library's errors become `rvq.RvqError` and its subclasses with the
//! library's one-line message. The Python package (`python/rvq/`) builds its public face on
//! this module. It takes no NumPy crate: ndarray's features on crates that burn shares would
//! make the wheel's build of burn differ from the command's (docs/BENCHMARKS.md, "Build").

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};
use rvq::archive::{Archive, ArchiveError, ArchiveReader};
use rvq::image_io::Limits;
use rvq::{Backend, Decoder, Effort, EncodeOptions, Encoder, Model, Named, Rate, Rgb};

create_exception!(
    rvq._rvq,
    RvqError,
    PyException,
    "Any error of the rvq codec; the message is the library's one line."
);
create_exception!(
    rvq._rvq,
    FormatError,
    RvqError,
    "Not an rvq archive, or a truncated or damaged one."
);
create_exception!(
    rvq._rvq,
    ModelMismatchError,
    RvqError,
    "The archive was made with another model, or asks for more codebooks than it has."
);
create_exception!(
    rvq._rvq,
    InputError,
    RvqError,
    "An image the codec cannot take: unreadable, too large, wrong shape or names."
);

/// `rvq.ArgumentError`, made at import: a class of two bases (`RvqError` and `ValueError`),
/// which `create_exception!` cannot make.
static ARGUMENT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// An argument out of its range, as `rvq.ArgumentError`: both an `RvqError`, as every error of
/// the codec, and a `ValueError`, as Python's own functions raise for such arguments.
fn argument_error(message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| match ARGUMENT_ERROR.get(py) {
        Some(ty) => PyErr::from_type(ty.bind(py).clone(), message),
        None => PyValueError::new_err(message),
    })
}

/// An integer argument within `range`, refused as an [`argument_error`] naming `what` (a
/// negative one too: Python's integers reach here unconverted, where a `usize` parameter
/// would raise `OverflowError`).
fn in_range(what: &str, value: i64, range: std::ops::RangeInclusive<i64>) -> PyResult<usize> {
    if range.contains(&value) {
        Ok(value as usize)
    } else {
        Err(argument_error(format!(
            "{what} {value}: expected {} to {}",
            range.start(),
            range.end()
        )))
    }
}

/// The library's error as the Python exception of its kind.
fn to_py(e: rvq::Error) -> PyErr {
    use rvq::Error as E;
    let message = e.to_string();
    match e {
        E::InvalidTarget(_) | E::InvalidOption(_) | E::InvalidEffort { .. } => {
            argument_error(message)
        }
        // What the reader found decides the class, whether or not a file is named.
        E::Archive { source, .. } | E::Format(source) => format_err_saying(source, message),
        E::BadIndices { .. } => FormatError::new_err(message),
        E::ModelMismatch { .. } | E::Codebooks { .. } | E::NotQuantized => {
            ModelMismatchError::new_err(message)
        }
        E::Io { .. }
        | E::BadImage { .. }
        | E::TooLarge { .. }
        | E::PixelBuffer { .. }
        | E::Alpha { .. }
        | E::DuplicateName { .. }
        | E::BadName { .. }
        | E::UnsafeName { .. }
        | E::NameStoredTwice { .. }
        | E::SameTarget { .. }
        | E::TargetInsideTarget { .. }
        | E::TargetIsFolder { .. }
        | E::TargetBelowFile { .. }
        | E::UnknownModel { .. } => InputError::new_err(message),
        _ => RvqError::new_err(message),
    }
}

/// An archive's error as the Python exception of its kind: most are the archive's bytes
/// (`FormatError`), some the arguments or images given with it.
fn format_err(e: ArchiveError) -> PyErr {
    let message = e.to_string();
    format_err_saying(e, message)
}

/// [`format_err`] with another message.
fn format_err_saying(e: ArchiveError, message: String) -> PyErr {
    match e {
        ArchiveError::TruncateBeyond { .. } | ArchiveError::NothingToMerge => {
            argument_error(message)
        }
        ArchiveError::MergeMismatch {
            what: "model fingerprint",
            ..
        } => ModelMismatchError::new_err(message),
        // A file that could not be read (a folder, a file that changed while being read) is
        // the input's fault, as Error::Io is.
        ArchiveError::DuplicateName { .. } | ArchiveError::Io(_) => InputError::new_err(message),
        _ => FormatError::new_err(message),
    }
}

/// An image as it crosses to Python: its pixels (rows of RGB triples), height and width.
type Image<'py> = (Bound<'py, PyBytes>, u32, u32);

impl Codec {
    /// A block stream over `input`; `path`, where it is a file, names it in errors.
    fn blocks_of(
        slf: &Bound<'_, Self>,
        input: Box<dyn std::io::Read + Send>,
        path: Option<&std::path::Path>,
    ) -> PyResult<Blocks> {
        let reader = ArchiveReader::new(input, &Limits::default()).map_err(|e| match path {
            Some(path) => to_py(rvq::Error::Archive {
                path: path.to_path_buf(),
                source: e,
            }),
            None => format_err(e),
        })?;
        let codec = slf.get();
        let header = reader.header();
        slf.py()
            .detach(|| codec.model().check_header(header, "given"))
            .map_err(to_py)?;
        Ok(Blocks {
            codec: slf.clone().unbind(),
            state: Mutex::new(BlocksState {
                reader,
                pending: Default::default(),
            }),
        })
    }
}

/// Decoded images with their stored names.
type NamedImages<'py> = Vec<(Option<String>, Image<'py>)>;

fn to_image(py: Python<'_>, image: Rgb) -> Image<'_> {
    (
        PyBytes::new(py, image.pixels()),
        image.height(),
        image.width(),
    )
}

/// Pixels of shape (height, width, channels) (1: gray, 3: RGB, 4: RGBA, whose alpha is
/// dropped as `rvq encode` drops it) as an image.
fn to_rgb(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    position: usize,
) -> PyResult<Rgb> {
    if !matches!(channels, 1 | 3 | 4) || pixels.len() != height * width * channels {
        return Err(InputError::new_err(format!(
            "image {position}: {} bytes for {height}×{width}×{channels}, expected 1, 3 or 4 channels",
            pixels.len()
        )));
    }
    // The limits every reader applies (an image past them would make an archive no reader
    // takes), before the pixels are copied.
    let what = PathBuf::from(format!("image {position}"));
    rvq::image_io::check_size(&what, width as u64, height as u64, &Limits::default())
        .map_err(to_py)?;
    let rgb: Vec<u8> = match channels {
        1 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        3 => pixels.to_vec(),
        _ => pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    };
    Rgb::new(width as u32, height as u32, rgb).map_err(to_py)
}

/// Images as the package passes them: (pixels, height, width, channels) each.
type Pixels = (Vec<u8>, usize, usize, usize);

fn images_of(images: Vec<Pixels>) -> PyResult<Vec<Rgb>> {
    images
        .iter()
        .enumerate()
        .map(|(i, (p, h, w, c))| to_rgb(p, *h, *w, *c, i))
        .collect()
}

/// The rate `rvq encode` takes from the same flags: a quality (default 90), a PSNR target, or
/// with `codebooks` alone every cell at that depth; `codebooks` caps the other two.
fn rate_of(quality: Option<i64>, psnr: Option<f64>, codebooks: Option<usize>) -> PyResult<Rate> {
    let quality = quality
        .map(|q| in_range("quality", q, 0..=100).map(|q| q as u8))
        .transpose()?;
    Ok(match (quality, psnr, codebooks) {
        (Some(_), Some(_), _) => {
            return Err(argument_error("give quality or psnr, not both"));
        }
        (Some(quality), None, max_codebooks) => Rate::Quality {
            quality,
            max_codebooks,
        },
        (None, Some(db), max_codebooks) => Rate::Psnr { db, max_codebooks },
        (None, None, Some(m)) => Rate::Codebooks(m),
        (None, None, None) => Rate::default(),
    })
}

/// A loaded model on a backend: encodes arrays to archives and decodes archives to arrays.
#[pyclass(module = "rvq._rvq", frozen)]
struct Codec {
    model: Mutex<Model>,
    fingerprint: String,
    backend: Backend,
    batch: usize,
    description: String,
}

impl Codec {
    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        // A panic while the lock was held cannot leave the model half-changed: it is only read.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Codec {
    /// Loads `model` (a model folder, or a built-in model's name: "default", "photo"; the
    /// default when None) on `backend` ("auto", "cpu" or "wgpu"). With `built_in`, `model` is
    /// a built-in model's name only, whatever folders the working directory holds (how a
    /// model an archive cites by fingerprint is loaded).
    #[new]
    #[pyo3(signature = (model=None, backend="auto", built_in=false))]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        backend: &str,
        built_in: bool,
    ) -> PyResult<Self> {
        let asked: Backend = backend.parse().map_err(argument_error)?;
        let chosen = py.detach(|| asked.choose()).map_err(to_py)?;
        let device = chosen.device.clone();
        let loaded = py
            .detach(|| match (&model, built_in) {
                (Some(name), true) => Model::load_built_in(&name.to_string_lossy(), &device),
                _ => Model::load_or_default(model.as_deref(), &device),
            })
            .map_err(to_py)?;
        Ok(Self {
            fingerprint: rvq::archive::hex(loaded.fingerprint()),
            model: Mutex::new(loaded),
            backend: chosen.backend,
            batch: chosen.backend.default_batch(),
            description: chosen.description,
        })
    }

    /// The backend the model runs on: "cpu" or "wgpu".
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// What was chosen, as `rvq` prints it (the adapter's name on a GPU).
    #[getter]
    fn device(&self) -> String {
        self.description.clone()
    }

    /// The model's fingerprint (hex), which its archives carry.
    #[getter]
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The archive of `images` (see the package's `encode`), as `rvq encode` writes it for
    /// the same pixels, names and options on the same backend.
    #[pyo3(signature = (images, *, names=None, quality=None, psnr=None, codebooks=None, effort=None, beam=None, refine=None, fit=None, entropy=true, filter=true, half_size=true))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Pixels>,
        names: Option<Vec<String>>,
        quality: Option<i64>,
        psnr: Option<f64>,
        codebooks: Option<i64>,
        effort: Option<i64>,
        beam: Option<i64>,
        refine: Option<i64>,
        fit: Option<i64>,
        entropy: bool,
        filter: bool,
        half_size: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let pixels = images_of(images)?;
        if let Some(n) = &names
            && n.len() != pixels.len()
        {
            return Err(InputError::new_err(format!(
                "{} names for {} images",
                n.len(),
                pixels.len()
            )));
        }
        let effort = match effort {
            Some(e) => {
                Effort::new(in_range("effort", e, 0..=i64::from(Effort::BEST.level()))? as u8)
                    .map_err(to_py)?
            }
            None => Effort::default(),
        };
        let defaults = EncodeOptions::default().with_effort(effort);
        let beam = beam.map(|v| in_range("beam", v, 1..=64)).transpose()?;
        let refine = refine.map(|v| in_range("refine", v, 1..=64)).transpose()?;
        let fit = fit.map(|v| in_range("fit", v, 0..=1000)).transpose()?;
        // Beyond the model's codebooks the library answers (ModelMismatchError, as for an
        // archive that asks for more than the model has); below 1 it is an argument's error.
        let codebooks = codebooks
            .map(|v| {
                usize::try_from(v)
                    .ok()
                    .filter(|&v| v >= 1)
                    .ok_or_else(|| argument_error(format!("codebooks {v}: expected at least 1")))
            })
            .transpose()?;
        let opts = EncodeOptions {
            rate: rate_of(quality, psnr, codebooks)?,
            names: names.is_some(),
            embed_codebook: None,
            batch_size: self.batch,
            beam: beam.unwrap_or(defaults.beam),
            refine: refine.unwrap_or(defaults.refine),
            rate_search: defaults.rate_search,
            entropy,
            neighbours: defaults.neighbours,
            filter,
            half_size,
            fit_steps: fit.unwrap_or(defaults.fit_steps),
        };
        let named: Vec<Named> = pixels
            .into_iter()
            .enumerate()
            .map(|(i, image)| Named {
                name: names
                    .as_ref()
                    .map_or_else(|| i.to_string(), |n| n[i].clone()),
                image,
            })
            .collect();
        let bytes = py
            .detach(|| {
                let model = self.model();
                Encoder::new(&model, opts)?.encode(&named)
            })
            .map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Every image of the archive `data`, as (H, W, 3) `uint8` arrays.
    fn decode<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Vec<Image<'py>>> {
        let images = py
            .detach(|| {
                let model = self.model();
                Decoder::new(&model, self.batch).decode(data, &Limits::default())
            })
            .map_err(to_py)?;
        Ok(images
            .into_iter()
            .map(|(_, image)| to_image(py, image))
            .collect())
    }

    /// The archive `data` decoded a block (64 images) at a time, as an iterator of lists of
    /// (name, image): memory holds one block, however long the archive.
    fn blocks(slf: &Bound<'_, Self>, data: Vec<u8>) -> PyResult<Blocks> {
        Self::blocks_of(slf, Box::new(std::io::Cursor::new(data)), None)
    }

    /// As `blocks`, read from the file at `path` as it is decoded: memory holds one block of
    /// the archive's bytes too, however large the file (a Ray task that decodes a few blocks
    /// of a large archive reads up to them, never holding the whole file).
    fn blocks_of_file(slf: &Bound<'_, Self>, path: PathBuf) -> PyResult<Blocks> {
        let file = std::fs::File::open(&path).map_err(|source| {
            to_py(rvq::Error::Io {
                path: path.clone(),
                source,
            })
        })?;
        Self::blocks_of(slf, Box::new(file), Some(&path))
    }

    /// As `decode_image`, of the archive in the file at `path` (`image_count` images, as
    /// its header says), read up to that image's block: memory holds one block of the file.
    fn decode_image_of_file<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        index: u64,
        image_count: u64,
    ) -> PyResult<(Option<String>, Image<'py>)> {
        if index >= image_count {
            return Err(PyIndexError::new_err(format!(
                "image {index} of an archive of {image_count}"
            )));
        }
        let (name, image) = py
            .detach(|| self.decode_file_image(&path, index))
            .map_err(to_py)?;
        Ok((name, to_image(py, image)))
    }

    /// Image `index` of the archive `data`, with its stored name: random access for
    /// `rvq.Archive[i]`. Only that image is decoded (its block is read and checked).
    fn decode_image<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        index: u64,
    ) -> PyResult<(Option<String>, Image<'py>)> {
        let archive = Archive::parse(data, &Limits::default()).map_err(format_err)?;
        if index >= archive.image_count {
            return Err(PyIndexError::new_err(format!(
                "image {index} of an archive of {}",
                archive.image_count
            )));
        }
        let (name, image) = py
            .detach(|| {
                let model = self.model();
                model.check_header(&archive.header, "given")?;
                let record = if archive.header.version == rvq::archive::VERSION_1 {
                    archive.record(&archive.index()?[index as usize])?
                } else {
                    let block = index / rvq::archive::BLOCK_RECORDS;
                    let mut records = archive.block(block)?;
                    records.swap_remove((index % rvq::archive::BLOCK_RECORDS) as usize)
                };
                let mut images = Decoder::new(&model, self.batch)
                    .decode_records(&archive.header, std::slice::from_ref(&record))?;
                Ok::<_, rvq::Error>((record.name, images.remove(0)))
            })
            .map_err(to_py)?;
        Ok((name, to_image(py, image)))
    }
}

impl Codec {
    /// Image `index` of the archive in the file at `path`: the blocks before its own are
    /// read and checked (lengths and checksums) but not decoded, its own block is parsed, and
    /// only that image decoded; memory holds one block of the file.
    fn decode_file_image(
        &self,
        path: &std::path::Path,
        index: u64,
    ) -> rvq::Result<(Option<String>, Rgb)> {
        let archive_err = |source| rvq::Error::Archive {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(|source| rvq::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = ArchiveReader::new(file, &Limits::default()).map_err(archive_err)?;
        let model = self.model();
        model.check_header(reader.header(), "given")?;
        let block = rvq::archive::BLOCK_RECORDS;
        reader.skip_blocks(index / block).map_err(archive_err)?;
        // Not `nth`, which would step over an error of the block's first record.
        let mut wanted = None;
        for record in reader.by_ref().take((index % block) as usize + 1) {
            wanted = Some(record.map_err(archive_err)?);
        }
        let record = wanted.ok_or_else(|| {
            archive_err(ArchiveError::InvalidRecord {
                index,
                reason: "the archive holds fewer images than when it was opened".into(),
            })
        })?;
        let mut images = Decoder::new(&model, self.batch)
            .decode_records(reader.header(), std::slice::from_ref(&record))?;
        Ok((record.name, images.remove(0)))
    }
}

/// An archive decoded a block at a time ([`Codec::blocks`], [`Codec::blocks_of_file`]): each step yields the images of
/// one block (64), or of part of one where they would hold more pixels than the largest image
/// an archive may hold, so that a forged block of huge images is decoded a few at a time.
#[pyclass(module = "rvq._rvq", frozen)]
struct Blocks {
    codec: Py<Codec>,
    state: Mutex<BlocksState>,
}

/// The reader and the records of its current block not yet decoded.
struct BlocksState {
    reader: ArchiveReader<Box<dyn std::io::Read + Send>>,
    pending: std::collections::VecDeque<rvq::archive::Record>,
}

#[pymethods]
impl Blocks {
    /// Steps over the next `count` blocks, checking their lengths and checksums but decoding
    /// none of their indices; only before the first block is yielded or between blocks.
    fn skip(&self, py: Python<'_>, count: u64) -> PyResult<()> {
        py.detach(|| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.pending.is_empty() {
                return Err(PyValueError::new_err(
                    "blocks are skipped between blocks, not inside one",
                ));
            }
            state.reader.skip_blocks(count).map_err(|e| match e {
                ArchiveError::NotAtBlockStart { .. } => PyValueError::new_err(e.to_string()),
                e => format_err(e),
            })?;
            Ok(())
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<NamedImages<'py>>> {
        let codec = self.codec.get();
        let decoded = py
            .detach(|| {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.pending.is_empty() {
                    match state.reader.next() {
                        Some(record) => state.pending.push_back(record?),
                        None => return Ok(None),
                    }
                    while state.pending.len() < rvq::archive::BLOCK_RECORDS as usize {
                        match state.reader.next() {
                            Some(record) => state.pending.push_back(record?),
                            None => break,
                        }
                    }
                }
                let most = Limits::default().max_pixels;
                let (mut records, mut pixels) = (Vec::new(), 0u64);
                while let Some(r) = state.pending.front() {
                    let more = r.width as u64 * r.height as u64;
                    if !records.is_empty() && pixels + more > most {
                        break;
                    }
                    pixels += more;
                    records.extend(state.pending.pop_front());
                }
                let model = codec.model();
                let images = Decoder::new(&model, codec.batch)
                    .decode_records(state.reader.header(), &records)?;
                let names: Vec<Option<String>> = records.into_iter().map(|r| r.name).collect();
                Ok::<_, rvq::Error>(Some((names, images)))
            })
            .map_err(to_py)?;
        let Some((names, images)) = decoded else {
            return Ok(None);
        };
        Ok(Some(
            names
                .into_iter()
                .zip(images)
                .map(|(name, image)| (name, to_image(py, image)))
                .collect(),
        ))
    }
}

/// What `rvq info --json` reports of the archive `data` (no model needed), as JSON text.
#[pyfunction]
fn archive_info(py: Python<'_>, data: &[u8]) -> PyResult<String> {
    let info = py
        .detach(|| Archive::parse(data, &Limits::default())?.info())
        .map_err(format_err)?;
    serde_json::to_string(&info).map_err(|e| RvqError::new_err(e.to_string()))
}

/// As `archive_info`, of the archive in the file at `path`, read a block at a time: memory
/// holds one block of the file (and every image's entry), however large it is.
#[pyfunction]
fn archive_info_of_file(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let info = py
        .detach(|| {
            let file = std::fs::File::open(&path).map_err(|source| rvq::Error::Io {
                path: path.clone(),
                source,
            })?;
            rvq::archive::read_info(file, &Limits::default()).map_err(|source| {
                rvq::Error::Archive {
                    path: path.clone(),
                    source,
                }
            })
        })
        .map_err(to_py)?;
    serde_json::to_string(&info).map_err(|e| RvqError::new_err(e.to_string()))
}

/// The fingerprint (hex) of the model the archive `data` cites, read from its header alone.
#[pyfunction]
fn archive_fingerprint(data: &[u8]) -> PyResult<String> {
    let reader = ArchiveReader::new(data, &Limits::default()).map_err(format_err)?;
    Ok(rvq::archive::hex(&reader.header().fingerprint))
}

/// The name of the built-in model ("default", "photo") whose fingerprint is `fingerprint`
/// (hex, as `archive_info` reports an archive's), or None.
#[pyfunction]
fn built_in_model(fingerprint: &str) -> Option<&'static str> {
    Model::built_in_for(fingerprint)
}

/// One archive of the `parts` (same model and settings), in order: what `rvq merge` writes.
#[pyfunction]
fn merge<'py>(py: Python<'py>, parts: Vec<Vec<u8>>) -> PyResult<Bound<'py, PyBytes>> {
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let merged = py
        .detach(|| rvq::archive::merge(&slices, &Limits::default()))
        .map_err(format_err)?;
    Ok(PyBytes::new(py, &merged))
}

/// [`merge`] into the file `out` (written whole or not at all, refused where it exists unless
/// `force`), reading `parts` (`bytes`, or paths of files) a block at a time: the merge holds
/// about a block, not the archives. Returns the bytes written. An error names the file it
/// was found in (a `bytes` part: "archive N of the merge").
#[pyfunction]
#[pyo3(signature = (parts, out, force = false))]
fn merge_into(
    py: Python<'_>,
    parts: Vec<Bound<'_, PyAny>>,
    out: PathBuf,
    force: bool,
) -> PyResult<u64> {
    rvq::names::check_target(&out).map_err(to_py)?;
    if out.exists() && !force {
        return Err(InputError::new_err(format!(
            "{}: already exists (pass force=True to replace it)",
            out.display()
        )));
    }
    let mut given = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        given.push(match part.cast::<PyBytes>() {
            Ok(bytes) => rvq::MergePart::Stream {
                name: format!("archive {index} of the merge").into(),
                reader: Box::new(std::io::Cursor::new(bytes.as_bytes().to_vec())),
            },
            Err(_) => rvq::MergePart::File(part.extract()?),
        });
    }
    py.detach(|| {
        let mut size = 0;
        rvq::image_io::write_atomic_with(&out, |file| {
            let written = rvq::merge_parts(given, Counted(file, 0), &out)?;
            size = written.1;
            Ok(())
        })
        .map(|()| size)
    })
    .map_err(to_py)
}

/// A writer that counts the bytes written through it.
struct Counted<W>(W, u64);

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The archive `data` cut to its first `codebooks` codebooks: what `rvq truncate` writes.
#[pyfunction]
fn truncate<'py>(py: Python<'py>, data: &[u8], codebooks: i64) -> PyResult<Bound<'py, PyBytes>> {
    // 0 and more than the archive stores are the library's to refuse (TruncateBeyond, an
    // ArgumentError here), with the range the archive allows.
    let codebooks = u32::try_from(codebooks).map_err(|_| {
        argument_error(format!(
            "codebooks {codebooks}: expected 1 to the codebooks the archive stores"
        ))
    })?;
    let cut = py
        .detach(|| rvq::archive::truncate(data, codebooks, &Limits::default()))
        .map_err(format_err)?;
    Ok(PyBytes::new(py, &cut))
}

/// The image at `path` read as `rvq encode` reads it (PNG, JPEG or WebP; gray, 16-bit, alpha
/// and EXIF orientation handled the same way), and whether it had an alpha channel.
#[pyfunction]
fn read_image(py: Python<'_>, path: PathBuf) -> PyResult<(Image<'_>, bool)> {
    let loaded = py
        .detach(|| rvq::image_io::read_rgb(&path, &Limits::default()))
        .map_err(to_py)?;
    Ok((to_image(py, loaded.image), loaded.had_alpha))
}

/// The image as PNG bytes, as `rvq decode` writes it.
#[pyfunction]
fn png<'py>(py: Python<'py>, image: Pixels) -> PyResult<Bound<'py, PyBytes>> {
    let (pixels, height, width, channels) = image;
    let rgb = to_rgb(&pixels, height, width, channels, 0)?;
    let bytes = py
        .detach(|| rvq::image_io::encode_png(&rgb))
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &bytes))
}

/// The image files under `inputs` (files as given, folders searched), sorted: the list `rvq
/// encode` encodes, in its order.
#[pyfunction]
fn collect_images(py: Python<'_>, inputs: Vec<PathBuf>) -> PyResult<Vec<PathBuf>> {
    py.detach(|| rvq::data::collect_images(&inputs))
        .map_err(to_py)
}

/// The file under `folder` that each record is written to, as `rvq decode` names it, given
/// each record's stored name (or None) in archive order. Names that would leave the folder or
/// clash (two records to one file, or one record's file inside another's) raise InputError
/// before anything is written; letter case is folded where `fold_case` (by default where this
/// platform's file systems fold it: Windows, macOS).
#[pyfunction]
#[pyo3(signature = (folder, names, fold_case=None))]
fn decode_targets(
    folder: PathBuf,
    names: Vec<Option<String>>,
    fold_case: Option<bool>,
) -> PyResult<Vec<PathBuf>> {
    let records: Vec<(u64, Option<&str>)> = (0u64..)
        .zip(&names)
        .map(|(i, n)| (i, n.as_deref()))
        .collect();
    rvq::names::decode_targets(
        &folder,
        &records,
        fold_case.unwrap_or(rvq::names::FOLDS_CASE),
    )
    .map_err(to_py)
}

/// Raises InputError where `target` cannot be written as a file: a folder, or below a file
/// where its folder should be (what `rvq decode` checks of every target before writing any).
#[pyfunction]
fn check_target(target: PathBuf) -> PyResult<()> {
    rvq::names::check_target(&target).map_err(to_py)
}

#[pymodule]
fn _rvq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Codec>()?;
    m.add_class::<Blocks>()?;
    m.add_function(wrap_pyfunction!(archive_info, m)?)?;
    m.add_function(wrap_pyfunction!(archive_info_of_file, m)?)?;
    m.add_function(wrap_pyfunction!(built_in_model, m)?)?;
    m.add_function(wrap_pyfunction!(archive_fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(merge_into, m)?)?;
    m.add_function(wrap_pyfunction!(truncate, m)?)?;
    m.add_function(wrap_pyfunction!(read_image, m)?)?;
    m.add_function(wrap_pyfunction!(png, m)?)?;
    m.add_function(wrap_pyfunction!(collect_images, m)?)?;
    m.add_function(wrap_pyfunction!(decode_targets, m)?)?;
    m.add_function(wrap_pyfunction!(check_target, m)?)?;
    m.add("RvqError", py.get_type::<RvqError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add("ModelMismatchError", py.get_type::<ModelMismatchError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "rvq._rvq")?;
    namespace.set_item(
        "__doc__",
        "An argument out of its range (a quality, a number of codebooks, an effort, a backend's name): both an RvqError and a ValueError.",
    )?;
    let bases = PyTuple::new(
        py,
        [
            py.get_type::<RvqError>().into_any(),
            py.get_type::<PyValueError>().into_any(),
        ],
    )?;
    let argument_error = py
        .get_type::<PyType>()
        .call1(("ArgumentError", bases, namespace))?
        .cast_into::<PyType>()?;
    m.add("ArgumentError", &argument_error)?;
    let _ = ARGUMENT_ERROR.set(py, argument_error.unbind());
    Ok(())
}
