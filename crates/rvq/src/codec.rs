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
use crate::rate::{Distortion, Target, cell_errors, lambda_for_quality};
use crate::refine;

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
    /// Entries of its last codebook each cell tries by decoding them, after rate control
    /// (1: none; see [`crate::refine`]).
    pub refine: usize,
    /// Per-cell depths chosen for a quality or PSNR target (the codebooks above are then
    /// the most a cell may use); `None`: every cell uses them all.
    pub target: Option<Target>,
    /// Range-code the indices of each block where that is shorter than packing them
    /// (docs/FORMAT.md, payload coder 1); off, archives stay readable by rvq before it.
    pub entropy: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            codebooks: None,
            names: true,
            embed_codebook: None,
            batch_size: 256,
            beam: DEFAULT_BEAM,
            refine: refine::DEFAULT_CANDIDATES,
            target: Some(Target::Quality(DEFAULT_QUALITY)),
            entropy: true,
        }
    }
}

/// The beam width `rvq encode` uses unless told otherwise: of the widths measured
/// (`scripts/search.sh`, docs/MODEL.md), 4 keeps most of 8's gain (−13% MSE at 8 codebooks on
/// CIFAR-10 against greedy's, 8's −17%) at two thirds of its encoding time.
pub const DEFAULT_BEAM: usize = 4;

/// The quality `rvq encode` uses unless given --quality, --psnr or --codebooks: measured on
/// the photographs in `samples/` (docs/RESULTS.md), it stays within 0.1 dB of every cell at
/// every codebook for about 16% fewer bytes.
pub const DEFAULT_QUALITY: u8 = 90;

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
    model.check_depth(m)?;
    let c = &model.config;
    let mut header = Header::new(
        model.fingerprint,
        c.latent_dim as u32,
        c.codebook_size as u32,
        c.num_codebooks as u32,
        c.grid_factor as u8,
        m as u32,
    );
    header.names = opts.names;
    header.entropy = opts.entropy;
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
    Ok(encode_records_reporting(model, images, m, opts)?.0)
}

/// [`encode_records`], also returning the images a `--psnr` target was out of reach for
/// (encoded at every codebook, the model's best), with the PSNR they got.
pub fn encode_records_reporting(
    model: &Model,
    images: &[Named],
    m: usize,
    opts: &EncodeOptions,
) -> Result<(Vec<Record>, Vec<Shortfall>)> {
    check_target(opts.target)?;
    model.check_depth(m)?;
    let f = model.config.grid_factor;
    let mut records = Vec::with_capacity(images.len());
    let mut short = Vec::new();
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
        // Refinement searches from the same latents, so the encoder runs once per batch.
        let latents = model.net.encode(x);
        let mut encoded = model.quantize_latents(latents.clone(), m, opts.beam)?;
        let (depths, missed) = match opts.target {
            None => (vec![Vec::new(); batch.len()], Vec::new()),
            Some(target) => choose_depths(model, batch, &encoded, m, target)?,
        };
        let originals: Vec<&Rgb> = batch.iter().map(|img| &img.image).collect();
        refine::refine_last_levels(
            model,
            latents,
            &originals,
            &mut encoded,
            &depths,
            m,
            opts.refine,
        )?;
        short.extend(shortfalls(
            model, batch, &encoded, &depths, m, opts, missed,
        )?);
        for ((img, indices), depths) in batch.iter().zip(encoded.indices).zip(depths) {
            let mut record = Record {
                width: img.image.width(),
                height: img.image.height(),
                name: opts.names.then(|| img.name.clone()),
                indices,
                depths: Vec::new(),
            };
            if depths.iter().any(|&d| d as usize != m) {
                record.indices = Record::stored_indices(&record.indices, &depths);
                record.depths = depths;
            }
            records.push(record);
        }
    }
    Ok((records, short))
}

/// An image rate control could not bring to a PSNR target: its place in the batch, and the
/// PSNR it got.
type Missed = (usize, f64);

/// The images of `batch` a PSNR target was out of reach for (`missed`: each one's place in the
/// batch and the PSNR rate control measured), named, with the PSNR the archive gives:
/// refinement only ever lowers an image's error, so after it each is measured again, and one
/// it lifted over the target is no longer short.
fn shortfalls(
    model: &Model,
    batch: &[Named],
    encoded: &crate::model::EncodedBatch,
    depths: &[Vec<u8>],
    m: usize,
    opts: &EncodeOptions,
    missed: Vec<Missed>,
) -> Result<Vec<Shortfall>> {
    let Some(Target::Psnr(db)) = opts.target else {
        return Ok(Vec::new());
    };
    let refined = if opts.refine > 1 && !missed.is_empty() {
        let y = model.decode_cells(&encoded.indices, Some(depths), encoded.grid, m)?;
        Some(quantizer::float_vec(y))
    } else {
        None
    };
    let f = model.config.grid_factor;
    Ok(missed
        .into_iter()
        .filter_map(|(i, got)| {
            let img = &batch[i];
            let got = refined
                .as_ref()
                .map_or(got, |y| decoded_psnr(y, i, &img.image, encoded.grid, f));
            (got < db).then(|| Shortfall {
                name: img.name.clone(),
                psnr: got,
            })
        })
        .collect())
}

/// The PSNR of image `i` of a batch's decoded planar output `y`, as written in 8 bits.
fn decoded_psnr(y: &[f32], i: usize, img: &Rgb, grid: (usize, usize), f: usize) -> f64 {
    let sse: f64 = cell_errors(y, i, img, grid, f).iter().sum();
    crate::rate::psnr(sse, img.pixels().len() as f64)
}

/// Decodes a batch at every depth 1..=m to measure each cell's error at each, then picks the
/// depths the target asks for. For a PSNR target the pick is checked by decoding it, and
/// tightened (up to every codebook) while an image falls short; images that do not reach the
/// target even then are returned by their place in the batch, with the PSNR they got.
fn choose_depths(
    model: &Model,
    batch: &[Named],
    encoded: &crate::model::EncodedBatch,
    m: usize,
    target: Target,
) -> Result<(Vec<Vec<u8>>, Vec<Missed>)> {
    let f = model.config.grid_factor;
    let (gh, gw) = encoded.grid;
    let bits = model.config.bits_per_index();
    let mut tables: Vec<Distortion> = batch
        .iter()
        .map(|img| Distortion {
            m,
            columns: gw,
            sse: vec![0.0; gh * gw * m],
            values: img.image.pixels().len() as f64,
        })
        .collect();
    for k in 1..=m {
        let y = quantizer::float_vec(model.decode_indices(&encoded.indices, encoded.grid, k)?);
        for (i, img) in batch.iter().enumerate() {
            let per = cell_errors(&y, i, &img.image, (gh, gw), f);
            for (c, e) in per.into_iter().enumerate() {
                tables[i].sse[c * m + k - 1] = e;
            }
        }
    }
    let mut depths: Vec<Vec<u8>> = tables
        .iter()
        .map(|t| match target {
            Target::Quality(q) => t.choose(lambda_for_quality(q), bits),
            Target::Psnr(db) => t.for_psnr(db, bits),
        })
        .collect();
    let Target::Psnr(db) = target else {
        return Ok((depths, Vec::new()));
    };

    // The table predicts each cell's error from uniform-depth decodes; neighbours at other
    // depths change it a little, so check the real decode and aim higher where it falls short.
    let mut aim = vec![db; batch.len()];
    loop {
        let y = quantizer::float_vec(model.decode_cells(
            &encoded.indices,
            Some(&depths),
            encoded.grid,
            m,
        )?);
        let mut settled = true;
        let mut missed = Vec::new();
        for (i, img) in batch.iter().enumerate() {
            let got = decoded_psnr(&y, i, &img.image, (gh, gw), f);
            if got >= db {
                continue;
            }
            if depths[i].iter().all(|&d| d as usize == m) {
                missed.push((i, got));
                continue;
            }
            settled = false;
            // Aim higher by the shortfall; after a few tries, give the image every codebook.
            aim[i] += (db - got).max(0.05);
            depths[i] = if aim[i] > db + 3.0 {
                vec![m as u8; gh * gw]
            } else {
                tables[i].for_psnr(aim[i], bits)
            };
        }
        if settled {
            return Ok((depths, missed));
        }
    }
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
        (image.width() as usize).div_ceil(f) * f,
        (image.height() as usize).div_ceil(f) * f,
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
    .map(|(bytes, _)| bytes)
}

/// An image a `--psnr` target was out of reach for: it was encoded with every codebook (the
/// model's best) and got this PSNR.
#[derive(Clone, Debug, PartialEq)]
pub struct Shortfall {
    /// The image's name.
    pub name: String,
    /// PSNR (dB) it got.
    pub psnr: f64,
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
) -> Result<(Vec<u8>, Vec<Shortfall>)> {
    encode_to(Vec::new(), model, count, load, opts, progress)
}

/// Encodes `count` images into an archive written to `out` record by record, fetching them
/// from `load` one batch at a time: memory holds one batch of images and their indices,
/// whatever `count` is. Returns `out` once the archive is complete, and the images a PSNR
/// target was out of reach for.
pub fn encode_to<'a, W: std::io::Write>(
    out: W,
    model: &Model,
    count: usize,
    load: &mut dyn FnMut(std::ops::Range<usize>) -> Result<Cow<'a, [Named]>>,
    opts: &EncodeOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<(W, Vec<Shortfall>)> {
    Encoder::new(model, opts.clone())?.encode_to(out, count, load, progress)
}

/// Refuses a target no encode can aim for: a quality above 100, a PSNR that is not a positive
/// number of dB.
fn check_target(target: Option<Target>) -> Result<()> {
    match target {
        Some(Target::Quality(q)) if q > 100 => {
            Err(Error::InvalidTarget(format!("quality {q} is above 100")))
        }
        Some(Target::Psnr(db)) if !(db.is_finite() && db > 0.0) => Err(Error::InvalidTarget(
            format!("PSNR {db} dB is not a positive number of dB"),
        )),
        _ => Ok(()),
    }
}

/// An encoder: one model, one set of options, checked once. The typed front of this module's
/// functions for a program that embeds the codec (see `examples/round_trip.rs`).
pub struct Encoder<'m> {
    model: &'m Model,
    opts: EncodeOptions,
    header: Header,
}

impl<'m> Encoder<'m> {
    /// Checks `opts` against `model` (codebooks within its range, a valid target) and fixes
    /// the archive header every archive of this encoder gets.
    pub fn new(model: &'m Model, opts: EncodeOptions) -> Result<Self> {
        check_target(opts.target)?;
        let m = opts.codebooks.unwrap_or(model.config.num_codebooks);
        let header = header_for(model, m, &opts)?;
        Ok(Self {
            model,
            opts,
            header,
        })
    }

    /// The header of this encoder's archives.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The archive of `images`, in memory.
    pub fn encode(&self, images: &[Named]) -> Result<Vec<u8>> {
        let mut load = |range: std::ops::Range<usize>| Ok(Cow::Borrowed(&images[range]));
        Ok(self
            .encode_to(Vec::new(), images.len(), &mut load, &mut |_| {})?
            .0)
    }

    /// The archive of `count` images fetched from `load` one batch at a time, written to
    /// `out` as it is made (see [`encode_to`]).
    pub fn encode_to<'a, W: std::io::Write>(
        &self,
        out: W,
        count: usize,
        load: &mut dyn FnMut(std::ops::Range<usize>) -> Result<Cow<'a, [Named]>>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(W, Vec<Shortfall>)> {
        let (model, opts) = (self.model, &self.opts);
        let m = self.header.codebooks_used as usize;
        let mut writer = ArchiveWriter::new(out, &self.header, count as u64)?;
        let mut seen = HashSet::new();
        let mut short = Vec::new();
        let mut done = 0;
        let step = opts.batch_size.max(1);
        for start in (0..count).step_by(step) {
            let batch = load(start..(start + step).min(count))?;
            for img in batch.iter() {
                if opts.names && !seen.insert(img.name.clone()) {
                    return Err(Error::DuplicateName {
                        name: img.name.clone(),
                    });
                }
            }
            let (records, missed) = encode_records_reporting(model, &batch, m, opts)?;
            short.extend(missed);
            for record in records {
                writer.write(&record)?;
                done += 1;
            }
            progress(done);
        }
        Ok((writer.finish()?, short))
    }
}

/// A decoder: one model and a batch size.
pub struct Decoder<'m> {
    model: &'m Model,
    batch_size: usize,
}

impl<'m> Decoder<'m> {
    /// A decoder running `model` on up to `batch_size` images at a time.
    pub fn new(model: &'m Model, batch_size: usize) -> Self {
        Self {
            model,
            batch_size: batch_size.max(1),
        }
    }

    /// Every image of the archive in `bytes`, with its stored name, after checking that the
    /// archive was made with this decoder's model and that every block is intact.
    pub fn decode(
        &self,
        bytes: &[u8],
        limits: &rvq_archive::Limits,
    ) -> Result<Vec<(Option<String>, Rgb)>> {
        let archive = Archive::parse(bytes, limits)?;
        check_model(&archive, self.model, "given")?;
        let records = archive.records()?;
        let images = decode_records(self.model, &archive.header, &records, self.batch_size)?;
        Ok(records.into_iter().map(|r| r.name).zip(images).collect())
    }
}

/// Checks that `archive` was made with `model`.
pub fn check_model(archive: &Archive, model: &Model, model_name: &str) -> Result<()> {
    check_header(&archive.header, model, model_name)
}

/// Checks that an archive with header `h` was made with `model` and uses between one and all
/// of its codebooks.
pub fn check_header(h: &Header, model: &Model, model_name: &str) -> Result<()> {
    if h.fingerprint != model.fingerprint {
        return Err(Error::ModelMismatch {
            model: model_name.to_string(),
            reason: format!(
                "the archive was made with model {} but this model is {}",
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
    // After the model checks, so that another model's archive is reported as such.
    model.check_depth(h.codebooks_used as usize)
}

/// Decodes records (all made with `model`) back to images, in batches of equal padded size.
pub fn decode_records(
    model: &Model,
    header: &Header,
    records: &[Record],
    batch_size: usize,
) -> Result<Vec<Rgb>> {
    // A header made for another model would fail deep inside the network, as a panic.
    check_header(header, model, "given")?;
    let f = model.config.grid_factor;
    let m = header.codebooks_used as usize;
    let mut out = Vec::with_capacity(records.len());
    let key = |r: &Record| header.grid(r.width, r.height);
    for batch in batches(records, batch_size, key) {
        let (gw, gh) = key(&batch[0]);
        let (indices, depths): (Vec<Vec<u32>>, Vec<Vec<u8>>) = batch
            .iter()
            .map(|r| (r.full_indices(header), r.cell_depths(header)))
            .unzip();
        let mixed = batch.iter().any(|r| r.has_depth_map(header));
        let y = model.decode_cells(
            &indices,
            mixed.then_some(depths.as_slice()),
            (gh as usize, gw as usize),
            m,
        )?;
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
        .ok_or_else(|| Error::NameNotUtf8 {
            path: file.to_path_buf(),
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
                    return Err(Error::Alpha { path: f.clone() });
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
    /// Whether blocks may range-code their indices (payload coder 1).
    pub entropy: bool,
    /// Blocks whose indices are range-coded.
    pub coded_blocks: u64,
    /// Bytes of index payloads (all images).
    pub payload_bytes: u64,
    /// Bytes of everything else: per-image fields, names, depth maps, block lengths and
    /// checksums.
    pub record_overhead_bytes: u64,
    /// Codebooks a cell uses, on average over all cells.
    pub mean_depth: f64,
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
    /// Bytes of the record (version 2: its share of its block's index bytes, in proportion to
    /// its indices; sizes, names, depth maps and checksums are shared by its block).
    pub bytes: u64,
}

/// Reads an archive's structure (every record's checksum included) without a model.
pub fn info(archive: &Archive) -> rvq_archive::Result<ArchiveInfo> {
    let h = &archive.header;
    // Version 1 pads each record's indices to a byte; version 2 each block's, or codes them,
    // and the reader says which and how many bytes they took.
    let (records, blocks) = archive.records_and_blocks()?;
    let payload: u64 = blocks.iter().map(|b| b.bytes).sum();
    let index_count: u64 = records.iter().map(|r| r.index_count(h)).sum();
    let cells: u64 = records.iter().map(|r| r.cell_depths(h).len() as u64).sum();
    let pixels: u64 = records
        .iter()
        .map(|r| r.width as u64 * r.height as u64)
        .sum();
    let total = archive.len() as u64;
    let images = archive.image_count;
    Ok(ArchiveInfo {
        version: h.version,
        fingerprint: hex(&h.fingerprint),
        latent_dim: h.latent_dim,
        codebook_size: h.codebook_size,
        num_codebooks: h.num_codebooks,
        codebooks_used: h.codebooks_used,
        grid_factor: h.grid_factor,
        bits_per_index: h.bits_per_index(),
        names: h.names,
        entropy: h.entropy,
        coded_blocks: blocks.iter().filter(|b| b.coded).count() as u64,
        embedded_codebook: h
            .codebook
            .as_ref()
            .map(|c| format!("{:?}", c.dtype).to_lowercase()),
        images,
        total_bytes: total,
        header_bytes: archive.header_len as u64,
        payload_bytes: payload,
        record_overhead_bytes: total - archive.header_len as u64 - payload,
        mean_depth: mean(index_count, cells),
        pixels,
        payload_bits_per_image: mean(payload * 8, images),
        bits_per_pixel: mean(total * 8, pixels),
        ratio_vs_raw_rgb: pixels as f64 * 3.0 / total as f64,
        ratio_vs_inputs: None,
        entries: entry_infos(archive, &records, &blocks)?,
    })
}

/// `total / count`, or 0 for no count.
fn mean(total: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}

/// Each record's name, size and bytes (version 1: its whole record; version 2: its share of
/// its block's index bytes, in proportion to its indices: exact for packed blocks up to the
/// padding, a share for coded ones).
fn entry_infos(
    archive: &Archive,
    records: &[Record],
    blocks: &[rvq_archive::BlockIndices],
) -> rvq_archive::Result<Vec<EntryInfo>> {
    let h = &archive.header;
    // A version-1 record is its own byte range; reading the index again costs no decode.
    // (Version 2 would decode every block a second time: its records share their blocks.)
    if h.version == rvq_archive::VERSION_1 {
        let entries = archive.index()?;
        return Ok(records
            .iter()
            .zip(entries)
            .map(|(r, e)| entry_info(r, e.len() as u64))
            .collect());
    }
    let group = rvq_archive::BLOCK_RECORDS as usize;
    Ok(records
        .chunks(group)
        .zip(blocks)
        .flat_map(|(g, block)| {
            let total: u64 = g.iter().map(|r| r.index_count(h)).sum();
            g.iter().map(move |r| {
                let share = (block.bytes as u128 * r.index_count(h) as u128)
                    .checked_div(total as u128)
                    .unwrap_or(0);
                entry_info(r, share as u64)
            })
        })
        .collect())
}

fn entry_info(r: &Record, bytes: u64) -> EntryInfo {
    EntryInfo {
        name: r.name.clone(),
        width: r.width,
        height: r.height,
        bytes,
    }
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
            ..Record::default()
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
