//! Images to archives and back: padding, batched inference, and the archive's records.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use rvq_archive::{Archive, ArchiveWriter, CodebookDType, EmbeddedCodebook, Header, Record};

use crate::error::{Error, Result};
use crate::image_io::{self, Limits, Rgb};
use crate::model::{Model, hex};
use crate::quantizer;

/// Settings for encoding.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Codebooks to use (m ≤ n_q); `None` uses all of them.
    pub codebooks: Option<usize>,
    /// Store each image's file name.
    pub names: bool,
    /// Embed the codebook vectors used, in this precision.
    pub embed_codebook: Option<CodebookDType>,
    /// Most images per inference batch.
    pub batch_size: usize,
    /// Beam width of the residual search (1: greedy); see [`crate::quantizer::quantize_beam`].
    pub beam: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            codebooks: None,
            names: true,
            embed_codebook: None,
            batch_size: 256,
            beam: DEFAULT_BEAM,
        }
    }
}

/// The beam width `rvq encode` uses unless told otherwise: of the widths measured
/// (`scripts/beam.sh`, docs/MODEL.md), 4 keeps most of 8's gain (−13% MSE at 8 codebooks on
/// CIFAR-10 against greedy's, 8's −17%) at two thirds of its encoding time.
pub const DEFAULT_BEAM: usize = 4;

/// An image to encode and the name it is stored under.
#[derive(Clone, Debug)]
pub struct Named {
    /// Relative, `/`-separated name (the archive stores it when names are on).
    pub name: String,
    /// The pixels.
    pub image: Rgb,
}

/// The header an archive of `model` at `m` codebooks gets.
pub fn header_for(model: &Model, m: usize, opts: &EncodeOptions) -> Result<Header> {
    let c = &model.config;
    if !c.quantize {
        return Err(Error::NotQuantized);
    }
    if m == 0 || m > c.num_codebooks {
        return Err(Error::Other(format!(
            "--codebooks {m} is outside 1..={} for this model",
            c.num_codebooks
        )));
    }
    let mut header = Header::new(
        model.fingerprint,
        c.latent_dim as u32,
        c.codebook_size as u32,
        c.num_codebooks as u32,
        c.grid_factor as u8,
        m as u32,
    );
    header.names = opts.names;
    if let Some(dtype) = opts.embed_codebook {
        let all = quantizer::float_vec(model.net.codebooks().ok_or(Error::NotQuantized)?);
        let used = m * c.codebook_size * c.latent_dim;
        header.codebook = Some(EmbeddedCodebook {
            dtype,
            values: all[..used].to_vec(),
        });
    }
    Ok(header)
}

/// Encodes images to archive records: images of one padded size go through the model
/// together, up to `opts.batch_size` at a time.
pub fn encode_records(
    model: &Model,
    images: &[Named],
    m: usize,
    opts: &EncodeOptions,
) -> Result<Vec<Record>> {
    let f = model.config.grid_factor;
    let mut records = Vec::with_capacity(images.len());
    for batch in batches(images, opts.batch_size, |img| padded(&img.image, f)) {
        let (w, h) = padded(&batch[0].image, f);
        let mut values = Vec::with_capacity(batch.len() * 3 * w * h);
        for img in batch {
            values.extend(image_io::to_planar_padded(&img.image, w, h));
        }
        let x = Tensor::<4>::from_data(
            TensorData::new(values, [batch.len(), 3, h, w]),
            &model.device,
        );
        let encoded = model.encode_indices(x, m, opts.beam)?;
        for (img, indices) in batch.iter().zip(encoded.indices) {
            records.push(Record {
                width: img.image.width,
                height: img.image.height,
                name: opts.names.then(|| img.name.clone()),
                indices,
            });
        }
    }
    Ok(records)
}

/// Consecutive runs of `items` with the same `key` (the padded size: one tensor shape), at most
/// `batch_size` long, in order.
fn batches<T, K: PartialEq>(
    items: &[T],
    batch_size: usize,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = key(rest.first()?);
        let len = rest
            .iter()
            .take(batch_size.max(1))
            .take_while(|item| key(item) == first)
            .count();
        let (batch, tail) = rest.split_at(len);
        rest = tail;
        Some(batch)
    })
}

fn padded(image: &Rgb, f: usize) -> (usize, usize) {
    (
        (image.width as usize).div_ceil(f) * f,
        (image.height as usize).div_ceil(f) * f,
    )
}

/// Encodes `images` into a complete archive, calling `progress` with the number of images
/// done after each batch.
pub fn encode(
    model: &Model,
    images: &[Named],
    opts: &EncodeOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<u8>> {
    encode_streaming(
        model,
        images.len(),
        &mut |range| Ok(Cow::Borrowed(&images[range])),
        opts,
        progress,
    )
}

/// Encodes `count` images into a complete archive, fetching them from `load` one batch
/// (`opts.batch_size` images) at a time, so that only one batch of pixels is held at once;
/// only the indices of the images already encoded are kept. See [`encode_to`] to write the
/// archive as it is made instead.
pub fn encode_streaming<'a>(
    model: &Model,
    count: usize,
    load: &mut dyn FnMut(std::ops::Range<usize>) -> Result<Cow<'a, [Named]>>,
    opts: &EncodeOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<u8>> {
    encode_to(Vec::new(), model, count, load, opts, progress)
}

/// Encodes `count` images into an archive written to `out` record by record, fetching them
/// from `load` one batch at a time: memory holds one batch of images and their indices,
/// whatever `count` is. Returns `out` once the archive is complete.
pub fn encode_to<'a, W: std::io::Write>(
    out: W,
    model: &Model,
    count: usize,
    load: &mut dyn FnMut(std::ops::Range<usize>) -> Result<Cow<'a, [Named]>>,
    opts: &EncodeOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<W> {
    let m = opts.codebooks.unwrap_or(model.config.num_codebooks);
    let header = header_for(model, m, opts)?;
    let archive_err = |e: rvq_archive::ArchiveError| Error::Other(e.to_string());
    let mut writer = ArchiveWriter::new(out, &header, count as u64).map_err(archive_err)?;
    let mut seen = HashSet::new();
    let mut done = 0;
    let step = opts.batch_size.max(1);
    for start in (0..count).step_by(step) {
        let batch = load(start..(start + step).min(count))?;
        for img in batch.iter() {
            if opts.names && !seen.insert(img.name.clone()) {
                return Err(Error::Other(format!(
                    "two inputs would be stored as {:?}; encode them into separate archives or use --no-names",
                    img.name
                )));
            }
        }
        for record in encode_records(model, &batch, m, opts)? {
            writer.write(&record).map_err(archive_err)?;
            done += 1;
        }
        progress(done);
    }
    writer.finish().map_err(archive_err)
}

/// Checks that `archive` was made with `model`.
pub fn check_model(archive: &Archive, model: &Model, model_name: &str) -> Result<()> {
    let h = &archive.header;
    if h.fingerprint != model.fingerprint {
        return Err(Error::ModelMismatch {
            model: model_name.to_string(),
            reason: format!(
                "the archive was made with model {} but this model is {}; pass the right --model",
                hex(&h.fingerprint),
                hex(&model.fingerprint)
            ),
        });
    }
    let c = &model.config;
    if (
        h.latent_dim as usize,
        h.codebook_size as usize,
        h.num_codebooks as usize,
        h.grid_factor as usize,
    ) != (
        c.latent_dim,
        c.codebook_size,
        c.num_codebooks,
        c.grid_factor,
    ) {
        return Err(Error::ModelMismatch {
            model: model_name.to_string(),
            reason: "the archive's codebook geometry differs from the model's".into(),
        });
    }
    Ok(())
}

/// Decodes records (all made with `model`) back to images, in batches of equal padded size.
pub fn decode_records(
    model: &Model,
    header: &Header,
    records: &[Record],
    batch_size: usize,
) -> Result<Vec<Rgb>> {
    let f = model.config.grid_factor;
    let m = header.codebooks_used as usize;
    let mut out = Vec::with_capacity(records.len());
    let key = |r: &Record| header.grid(r.width, r.height);
    for batch in batches(records, batch_size, key) {
        let (gw, gh) = key(&batch[0]);
        let indices: Vec<Vec<u32>> = batch.iter().map(|r| r.indices.clone()).collect();
        let y = model.decode_indices(&indices, (gh as usize, gw as usize), m)?;
        let (pw, ph) = (gw as usize * f, gh as usize * f);
        let values = quantizer::float_vec(y);
        let per = 3 * pw * ph;
        for (i, r) in batch.iter().enumerate() {
            out.push(image_io::from_planar_cropped(
                &values[i * per..(i + 1) * per],
                pw,
                ph,
                r.width,
                r.height,
            ));
        }
    }
    Ok(out)
}

/// The name an input file is stored under: its path relative to the folder it was found in
/// (or its file name when given directly), with `/` separators.
pub fn stored_name(file: &Path, inputs: &[PathBuf]) -> Result<String> {
    let rel = inputs
        .iter()
        .filter(|i| i.is_dir())
        .find_map(|dir| file.strip_prefix(dir).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(file.file_name().unwrap_or(file.as_os_str())));
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let name = parts
        .ok_or_else(|| Error::BadImage {
            path: file.to_path_buf(),
            reason: "file name is not UTF-8; use --no-names".into(),
        })?
        .join("/");
    rvq_archive::validate_name(&name).map_err(|reason| Error::BadImage {
        path: file.to_path_buf(),
        reason,
    })?;
    Ok(name)
}

/// The file name a decoded record is written under: its stored name with a `.png`
/// extension, or `image-NNNNNN.png` by position. A stored name that this system would not
/// read as plain relative components is refused: the archive reader already refuses roots
/// and `..`, but "C:x.png" is a drive-relative path only on Windows.
pub fn output_name(record: &Record, position: u64) -> Result<PathBuf> {
    let Some(n) = &record.name else {
        return Ok(PathBuf::from(format!("image-{position:06}.png")));
    };
    let p = PathBuf::from(n);
    if !p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::UnsafeName { name: n.clone() });
    }
    Ok(
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            p
        } else {
            PathBuf::from(format!("{n}.png"))
        },
    )
}

/// Reads the input images for `encode`, enforcing `limits`; `warn` is told about each
/// image whose alpha channel is dropped (with `strict`, that is an error instead).
pub fn read_inputs(
    files: &[PathBuf],
    inputs: &[PathBuf],
    limits: &Limits,
    strict: bool,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Named>> {
    files
        .iter()
        .map(|f| {
            let loaded = image_io::read_rgb(f, limits, false)?;
            if loaded.had_alpha {
                if strict {
                    return Err(Error::BadImage {
                        path: f.clone(),
                        reason: "has an alpha channel, which rvq does not store (--strict)".into(),
                    });
                }
                warn(format!("{}: alpha channel dropped", f.display()));
            }
            Ok(Named {
                name: stored_name(f, inputs)?,
                image: loaded.image,
            })
        })
        .collect()
}

/// What `rvq info` reports about an archive.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ArchiveInfo {
    /// Format version.
    pub version: u8,
    /// Model fingerprint (hex).
    pub fingerprint: String,
    /// Latent channels d.
    pub latent_dim: u32,
    /// Entries per codebook k.
    pub codebook_size: u32,
    /// Codebooks in the model n_q.
    pub num_codebooks: u32,
    /// Codebooks used m.
    pub codebooks_used: u32,
    /// Pixels per latent cell side.
    pub grid_factor: u8,
    /// Bits per index.
    pub bits_per_index: u32,
    /// Whether names are stored.
    pub names: bool,
    /// Embedded codebook precision, if any.
    pub embedded_codebook: Option<String>,
    /// Number of images.
    pub images: u64,
    /// Bytes of the whole archive.
    pub total_bytes: u64,
    /// Bytes of the shared header.
    pub header_bytes: u64,
    /// Bytes of index payloads (all images).
    pub payload_bytes: u64,
    /// Bytes of per-image fields, names and checksums.
    pub record_overhead_bytes: u64,
    /// Pixels over all images.
    pub pixels: u64,
    /// Payload bits per image (mean).
    pub payload_bits_per_image: f64,
    /// Archive bits per pixel, everything included.
    pub bits_per_pixel: f64,
    /// Raw RGB bytes (W·H·3 summed) over archive bytes.
    pub ratio_vs_raw_rgb: f64,
    /// Input file bytes over archive bytes, when the inputs were given.
    pub ratio_vs_inputs: Option<f64>,
    /// Per image: name, width, height, record bytes.
    pub entries: Vec<EntryInfo>,
}

/// One image in [`ArchiveInfo`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct EntryInfo {
    /// Stored name.
    pub name: Option<String>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes of the record.
    pub bytes: u64,
}

/// Reads an archive's structure (every record's checksum included) without a model.
pub fn info(archive: &Archive) -> rvq_archive::Result<ArchiveInfo> {
    let entries = archive.index()?;
    for e in &entries {
        archive.record(e)?;
    }
    let h = &archive.header;
    let payload: u64 = entries
        .iter()
        .map(|e| h.payload_len(e.width, e.height))
        .sum();
    let records: u64 = entries.iter().map(|e| e.len as u64).sum();
    let pixels: u64 = entries
        .iter()
        .map(|e| e.width as u64 * e.height as u64)
        .sum();
    let total = archive.len() as u64;
    let images = archive.image_count;
    let payload_bits: u64 = entries
        .iter()
        .map(|e| h.index_count(e.width, e.height) * h.bits_per_index() as u64)
        .sum();
    Ok(ArchiveInfo {
        version: rvq_archive::VERSION,
        fingerprint: hex(&h.fingerprint),
        latent_dim: h.latent_dim,
        codebook_size: h.codebook_size,
        num_codebooks: h.num_codebooks,
        codebooks_used: h.codebooks_used,
        grid_factor: h.grid_factor,
        bits_per_index: h.bits_per_index(),
        names: h.names,
        embedded_codebook: h
            .codebook
            .as_ref()
            .map(|c| format!("{:?}", c.dtype).to_lowercase()),
        images,
        total_bytes: total,
        header_bytes: archive.header_len as u64,
        payload_bytes: payload,
        record_overhead_bytes: records - payload,
        pixels,
        payload_bits_per_image: if images == 0 {
            0.0
        } else {
            payload_bits as f64 / images as f64
        },
        bits_per_pixel: if pixels == 0 {
            0.0
        } else {
            total as f64 * 8.0 / pixels as f64
        },
        ratio_vs_raw_rgb: pixels as f64 * 3.0 / total as f64,
        ratio_vs_inputs: None,
        entries: entries
            .iter()
            .map(|e| EntryInfo {
                name: e.name.clone(),
                width: e.width,
                height: e.height,
                bytes: e.len as u64,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_at_size_changes_and_at_the_batch_size() {
        let items = [1, 1, 1, 2, 2, 1, 1, 1, 1, 1];
        let got: Vec<&[i32]> = batches(&items, 3, |v| *v).collect();
        let want: Vec<&[i32]> = vec![&[1, 1, 1], &[2, 2], &[1, 1, 1], &[1, 1]];
        assert_eq!(got, want);
        assert_eq!(batches(&items, 0, |v| *v).count(), items.len());
        assert_eq!(batches(&[] as &[i32], 4, |v| *v).count(), 0);
    }

    fn named(name: &str) -> Record {
        Record {
            width: 8,
            height: 8,
            name: Some(name.into()),
            indices: Vec::new(),
        }
    }

    #[test]
    fn output_names_stay_inside_the_output_folder() {
        let ok = |n: &str| output_name(&named(n), 0).unwrap();
        assert_eq!(ok("d/e.png"), PathBuf::from("d/e.png"));
        assert_eq!(ok("cat"), PathBuf::from("cat.png"));
        let unnamed = Record {
            name: None,
            ..named("")
        };
        assert_eq!(
            output_name(&unnamed, 7).unwrap(),
            PathBuf::from("image-000007.png")
        );
        for bad in ["../x.png", "a/../../x.png", "/etc/x.png", "./x.png"] {
            let err = output_name(&named(bad), 0).unwrap_err();
            assert!(matches!(err, Error::UnsafeName { .. }), "{bad}: {err}");
        }
        // A drive prefix leaves the folder only where it is one.
        assert_eq!(output_name(&named("C:x.png"), 0).is_err(), cfg!(windows));
    }
}
