//! Images to archives: padding, passes under the memory budget, rate control and refinement,
//! and the archive's records ([`crate::decode`] goes back).

use std::collections::HashSet;

use rvq_archive::{ArchiveWriter, CodebookDType, EmbeddedCodebook, Header, Record};

use crate::budget;
use crate::effort::Effort;
use crate::error::{Error, Result};
use crate::image_io::{self, Rgb};
use crate::model::Model;
use crate::quantizer;
use crate::rate::{Missed, Rate, RateSearch, Target, choose_depths, decoded_psnrs, filter_lambda};
use crate::refine;
use crate::restore;

mod halves;

/// Settings for encoding.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// How many codebooks each cell uses: a fixed depth, a quality or a PSNR, each with the
    /// most a cell may use (the archive's depth).
    pub rate: Rate,
    /// Store each image's file name.
    pub names: bool,
    /// Embed the codebook vectors used, in this precision.
    pub embed_codebook: Option<CodebookDType>,
    /// Most images per inference batch.
    pub batch_size: usize,
    /// Beam width of the residual search (1: greedy); see the README (`--beam`). Set with
    /// the rest of the search by [`EncodeOptions::with_effort`].
    pub beam: usize,
    /// Entries of its last codebook each cell tries by decoding them, after rate control
    /// (1: none; see the README, `--refine`).
    pub refine: usize,
    /// How rate control measures each cell's error at each depth (a quality or PSNR target).
    pub rate_search: RateSearch,
    /// Range-code the indices of each block where that is shorter than packing them
    /// (docs/FORMAT.md, payload coders 1 and 2); off, archives stay readable by rvq before it.
    pub entropy: bool,
    /// With `entropy`, code each index under its neighbours' contexts (payload coder 2);
    /// off, payload coder 1, which rvq read before coder 2 existed.
    pub neighbours: bool,
    /// Fit each image's restoration filter where it pays for its bytes (format version 3,
    /// docs/FORMAT.md); off, archives are version 2, which rvq read before filters existed.
    pub filter: bool,
    /// With `filter`, at a quality below 60 or a PSNR target, also try each image of 16,384
    /// pixels or more at half size and keep the size that costs less (format version 4,
    /// docs/FORMAT.md); off, such archives are version 3, which rvq read before half-size
    /// images existed.
    pub half_size: bool,
    /// Adam steps that fit each image's latents to the decoder before quantization (0: none;
    /// the highest [`Effort`] takes 20): every tenth step decodes the image's pass, the steps
    /// between estimate its pixels through the decoder's linear path. An image larger than one
    /// pass of the memory budget (the fit's buffers counted in it) is fitted tile by tile. Any
    /// reader decodes the result.
    pub fit_steps: usize,
}

impl Default for EncodeOptions {
    /// Quality 90 at the default [`Effort`], names stored, indices range-coded.
    fn default() -> Self {
        let effort = Effort::default();
        Self {
            rate: Rate::default(),
            names: true,
            embed_codebook: None,
            batch_size: 256,
            beam: effort.beam(),
            refine: effort.refine(),
            rate_search: effort.rate_search(),
            entropy: true,
            neighbours: true,
            filter: true,
            half_size: true,
            fit_steps: effort.fit_steps(),
        }
    }
}

impl EncodeOptions {
    /// These options with the beam, refinement, rate search and fitting steps of `effort`.
    pub fn with_effort(self, effort: Effort) -> Self {
        Self {
            beam: effort.beam(),
            refine: effort.refine(),
            rate_search: effort.rate_search(),
            fit_steps: effort.fit_steps(),
            ..self
        }
    }
}

/// An image to encode and the name it is stored under.
#[derive(Clone, Debug)]
pub struct Named {
    /// Relative, `/`-separated name (the archive stores it when names are on).
    pub name: String,
    /// The pixels.
    pub image: Rgb,
}

/// The header an archive of `model` encoded with `opts` gets.
pub(crate) fn header_for(model: &Model, opts: &EncodeOptions) -> Result<Header> {
    let m = opts.rate.codebooks(model.config.num_codebooks);
    model.check_depth(m)?;
    let c = &model.config;
    let mut header = Header::new(model.fingerprint, c.geometry(), m as u32);
    header.names = opts.names;
    header.entropy = opts.entropy;
    header.neighbours = opts.entropy && opts.neighbours;
    if opts.filter {
        header.version = rvq_archive::VERSION_3;
    }
    if halves::tries(opts).is_some() {
        header.version = rvq_archive::VERSION_4;
    }
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
/// together, up to `opts.batch_size` at a time and as many as the model's memory budget holds
/// (an image larger than that alone, in tiles).
pub(crate) fn encode_records(
    model: &Model,
    images: &[Named],
    opts: &EncodeOptions,
) -> Result<Vec<Record>> {
    Ok(encode_records_reporting(model, images, opts)?.0)
}

/// [`encode_records`], also returning the images a PSNR target was out of reach for (encoded
/// at every codebook, the model's best), with the PSNR they got.
pub(crate) fn encode_records_reporting(
    model: &Model,
    images: &[Named],
    opts: &EncodeOptions,
) -> Result<(Vec<Record>, Vec<Shortfall>)> {
    let halves = halves::tries(opts);
    let (mut records, short, written) = encode_at_size(model, images, opts, halves.is_some())?;
    if let Some(halves) = halves {
        halves::choose(model, images, (&mut records, written), &halves, opts)?;
    }
    Ok((records, short))
}

/// [`encode_records_reporting`] with every image coded at its own size; with `keep`, also each
/// image's decode as written, where its batch was decoded for the filters (else `None`).
#[allow(clippy::type_complexity)]
fn encode_at_size(
    model: &Model,
    images: &[Named],
    opts: &EncodeOptions,
    keep: bool,
) -> Result<(Vec<Record>, Vec<Shortfall>, Vec<Option<Rgb>>)> {
    opts.rate.check()?;
    let m = opts.rate.codebooks(model.config.num_codebooks);
    model.check_depth(m)?;
    let f = model.config.grid_factor;
    let mut records = Vec::with_capacity(images.len());
    let mut short = Vec::new();
    let mut kept = Vec::with_capacity(images.len());
    let pass = |&(w, h): &(usize, usize)| model.images_per_pass((w * h) as u64, opts.batch_size);
    for batch in budget::batches(images, pass, |img| padded(&img.image, f)) {
        let (w, h) = padded(&batch[0].image, f);
        let mut values = Vec::with_capacity(batch.len() * 3 * w * h);
        for img in batch {
            values.extend(image_io::to_planar_padded(&img.image, w, h));
        }
        // Refinement searches from the same latents, so the encoder runs once per batch.
        let latents = model.encode_planar(&values, batch.len(), h, w)?;
        let visible: Vec<(usize, usize)> = batch
            .iter()
            .map(|img| (img.image.width() as usize, img.image.height() as usize))
            .collect();
        let latents = crate::fit::fit_latents(model, latents, &values, &visible, opts.fit_steps)?;
        drop(values);
        let per_depth = opts.rate.target().is_some();
        let mut encoded = model.quantize_latents(latents.clone(), (m, opts.beam), per_depth)?;
        let (depths, missed, wanted) = match opts.rate.target() {
            None => (vec![Vec::new(); batch.len()], Vec::new(), None),
            Some(target) => {
                let how = (opts.rate_search, wants_filters(batch, opts));
                let images = originals(batch);
                choose_depths(model, &images, &encoded, m, target, how, &latents)?
            }
        };
        // Each cell takes the path closest at the depth chosen for it.
        encoded = encoded.at_depths(&depths);
        let originals: Vec<&Rgb> = batch.iter().map(|img| &img.image).collect();
        let known = refine::refine_last_levels(
            model,
            latents,
            &originals,
            &mut encoded,
            (&depths, m),
            refine::Refinement {
                candidates: opts.refine,
                linear: opts.rate_search != RateSearch::Decoded,
                keep: wants_filters(batch, opts),
            },
        )?;
        let fitted = (known, wanted);
        let (filters, written, decodes) =
            filters(model, batch, &encoded, (&depths, m), opts, fitted, keep)?;
        match decodes {
            Some(d) => kept.extend(d.into_iter().map(Some)),
            None => kept.resize_with(kept.len() + batch.len(), || None),
        }
        short.extend(shortfalls(
            model,
            batch,
            &encoded,
            (&depths, m),
            opts,
            missed,
            written,
        )?);
        let each = encoded.indices.into_iter().zip(depths).zip(filters);
        records.extend(
            batch
                .iter()
                .zip(each)
                .map(|(img, ((indices, depths), filter))| {
                    record(img, opts.names, (indices, depths, m), filter)
                }),
        );
    }
    Ok((records, short, kept))
}

/// The record of `img`: its size, its name (with `names`), its `indices` at `depths` (only
/// the cells' stored ones, and the depths, where a cell stops short of `m`) and its filter.
fn record(
    img: &Named,
    names: bool,
    (indices, depths, m): (Vec<u32>, Vec<u8>, usize),
    filter: Option<rvq_archive::Filter>,
) -> Record {
    let mut record = Record {
        width: img.image.width(),
        height: img.image.height(),
        name: names.then(|| img.name.clone()),
        indices,
        depths: Vec::new(),
        filter,
        half: false,
    };
    if depths.iter().any(|&d| d as usize != m) {
        record.indices = Record::stored_indices(&record.indices, &depths);
        record.depths = depths;
    }
    record
}

/// The images of `batch` a PSNR target was out of reach for (`missed`: each one's place in the
/// batch and the PSNR rate control measured), named, with the PSNR the archive gives:
/// refinement and filters only ever lower an image's error, so after them each is measured
/// again (`written`: each image's PSNR as written, where the filters' decode measured it), and
/// one they lifted over the target is no longer short.
fn shortfalls(
    model: &Model,
    batch: &[Named],
    encoded: &crate::quantizer::EncodedBatch,
    (depths, m): (&[Vec<u8>], usize),
    opts: &EncodeOptions,
    missed: Vec<Missed>,
    written: Option<Vec<f64>>,
) -> Result<Vec<Shortfall>> {
    let Some(Target::Psnr(db)) = opts.rate.target() else {
        return Ok(Vec::new());
    };
    let written_measured = written.is_some();
    let measured = match written {
        Some(psnr) => Some(psnr),
        None if opts.refine > 1 && !missed.is_empty() => Some(decoded_psnrs(
            model,
            &originals(batch),
            encoded,
            Some(depths),
            m,
        )?),
        None => None,
    };
    // With the images' PSNR as written, every image is checked: rate control counted on the
    // filters it measured before refinement, and one refitted to the refined decode could fall
    // short where the image does not have every codebook.
    let full = |i: usize| depths[i].iter().all(|&d| d as usize == m);
    let short: Vec<(usize, f64)> = match &measured {
        Some(psnr) if written_measured => (0..batch.len()).map(|i| (i, psnr[i])).collect(),
        Some(psnr) => missed.iter().map(|&(i, _)| (i, psnr[i])).collect(),
        None => missed,
    };
    Ok(short
        .into_iter()
        .filter(|&(_, got)| got < db)
        .map(|(i, got)| Shortfall {
            name: batch[i].name.clone(),
            psnr: got,
            every_codebook: full(i),
        })
        .collect())
}

/// Each image's restoration filter (`opts.filter`), fitted against its original to the decode
/// of its indices as they will be written (`known` where refinement made it, else decoded
/// here) at rate control's price of a bit (without a quality, that of the quality its mean
/// depth stands for); under a PSNR target, only for the images `wanted` names (those that meet
/// it in fewer bytes with one: [`choose_depths`]), and with them each image's PSNR as written;
/// with `keep`, each image as written (its decode, filtered). A batch of images under
/// [`restore::MIN_PIXELS`] gets none and is not decoded.
#[allow(clippy::type_complexity)]
fn filters(
    model: &Model,
    batch: &[Named],
    encoded: &crate::quantizer::EncodedBatch,
    (depths, m): (&[Vec<u8>], usize),
    opts: &EncodeOptions,
    (known, wanted): (Vec<Option<Rgb>>, Option<Vec<bool>>),
    keep: bool,
) -> Result<(
    Vec<Option<rvq_archive::Filter>>,
    Option<Vec<f64>>,
    Option<Vec<Rgb>>,
)> {
    if !wants_filters(batch, opts) {
        return Ok((vec![None; batch.len()], None, None));
    }
    let n_q = model.config.num_codebooks;
    let lambda = |d: &[u8]| filter_lambda(opts.rate.target(), d, m, n_q);
    let decoded = decodes(model, batch, encoded, depths, m, known)?;
    // Only a PSNR target reports what an image decodes to.
    let target_db = match opts.rate.target() {
        Some(Target::Psnr(db)) => db,
        _ => f64::INFINITY,
    };
    let report = target_db.is_finite();
    let mut psnrs = Vec::with_capacity(batch.len());
    let mut written = Vec::new();
    let filters = batch
        .iter()
        .zip(decoded)
        .zip(depths)
        .enumerate()
        .map(|(i, ((img, dec), d))| {
            // Under a PSNR target, only the images rate control chose to write with one, and
            // for those, where the filter at the price of its bytes falls short of the target,
            // the closest filter whatever its bytes.
            let fitted = match &wanted {
                Some(w) if !w[i] => None,
                Some(_) => fit_to_reach(&img.image, &dec, lambda(d), target_db),
                None => restore::fit(&img.image, &dec, lambda(d)),
            };
            let (filter, out) = match fitted {
                Some((filter, filtered)) => (Some(filter), filtered),
                None => (None, dec),
            };
            if report {
                psnrs.push(crate::eval::image_psnr(&img.image, &out));
            }
            if keep {
                written.push(out);
            }
            filter
        })
        .collect();
    Ok((filters, report.then_some(psnrs), keep.then_some(written)))
}

/// The filter [`restore::fit`] gives at `lambda`, or where that leaves `image` below `db`, the
/// one it gives at no price for its bytes if that comes closer.
fn fit_to_reach(
    image: &Rgb,
    decoded: &Rgb,
    lambda: f64,
    db: f64,
) -> Option<(rvq_archive::Filter, Rgb)> {
    let psnr = |f: &Option<(rvq_archive::Filter, Rgb)>| {
        crate::eval::image_psnr(image, f.as_ref().map_or(decoded, |(_, out)| out))
    };
    let priced = restore::fit(image, decoded, lambda);
    if psnr(&priced) >= db || lambda == 0.0 {
        return priced;
    }
    let free = restore::fit(image, decoded, 0.0);
    if psnr(&free) > psnr(&priced) {
        free
    } else {
        priced
    }
}

/// Whether any image of `batch` may take a restoration filter under `opts`.
fn wants_filters(batch: &[Named], opts: &EncodeOptions) -> bool {
    let pixels = |img: &Named| img.image.width() as u64 * img.image.height() as u64;
    opts.filter && batch.iter().any(|img| pixels(img) >= restore::MIN_PIXELS)
}

/// Each image of `batch` as `encoded` decodes in 8 bits: `known` where given, the others
/// decoded together.
fn decodes(
    model: &Model,
    batch: &[Named],
    encoded: &crate::quantizer::EncodedBatch,
    depths: &[Vec<u8>],
    m: usize,
    known: Vec<Option<Rgb>>,
) -> Result<Vec<Rgb>> {
    let missing: Vec<usize> = (0..batch.len()).filter(|&i| known[i].is_none()).collect();
    let mut fresh = if missing.is_empty() {
        Vec::new()
    } else {
        let indices: Vec<Vec<u32>> = missing
            .iter()
            .map(|&i| encoded.indices[i].clone())
            .collect();
        let cells: Vec<Vec<u8>> = missing.iter().map(|&i| depths[i].clone()).collect();
        let sizes: Vec<(u32, u32)> = missing
            .iter()
            .map(|&i| (batch[i].image.width(), batch[i].image.height()))
            .collect();
        let mixed = cells.iter().any(|d| !d.is_empty());
        model.decode_images(
            &indices,
            mixed.then_some(&cells[..]),
            encoded.grid,
            m,
            &sizes,
        )?
    }
    .into_iter();
    Ok(known
        .into_iter()
        .map(|k| k.unwrap_or_else(|| fresh.next().expect("one decode per missing image")))
        .collect())
}

/// The images of a batch, for the functions that compare decodes with them.
fn originals(batch: &[Named]) -> Vec<&Rgb> {
    batch.iter().map(|img| &img.image).collect()
}

fn padded(image: &Rgb, f: usize) -> (usize, usize) {
    (
        (image.width() as usize).div_ceil(f) * f,
        (image.height() as usize).div_ceil(f) * f,
    )
}

/// An image a `--psnr` target was out of reach for: it was encoded with every codebook (the
/// model's best) and got this PSNR.
#[derive(Clone, Debug, PartialEq)]
pub struct Shortfall {
    /// The image's name.
    pub name: String,
    /// PSNR (dB) it got.
    pub psnr: f64,
    /// Whether it had every codebook (the model's best); else its restoration filter, refitted
    /// after refinement, fell short of what rate control measured.
    pub every_codebook: bool,
}

/// An encoder: one model, one set of options, checked once (see `examples/round_trip.rs`).
pub struct Encoder<'m> {
    model: &'m Model,
    opts: EncodeOptions,
    header: Header,
}

impl<'m> Encoder<'m> {
    /// Checks `opts` against `model` (codebooks within its range, a valid target) and fixes
    /// the archive header every archive of this encoder gets.
    pub fn new(model: &'m Model, opts: EncodeOptions) -> Result<Self> {
        opts.rate.check()?;
        let header = header_for(model, &opts)?;
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

    /// The records of `images`, as an archive of this encoder's would hold them: images of one
    /// padded size go through the model together, up to the options' batch size at a time and
    /// as many as the model's memory budget holds (an image larger than that alone, in tiles).
    pub fn records(&self, images: &[Named]) -> Result<Vec<Record>> {
        encode_records(self.model, images, &self.opts)
    }

    /// [`Encoder::records`], also returning the images a PSNR target was out of reach for
    /// (encoded at every codebook, the model's best), with the PSNR they got.
    pub fn records_reporting(&self, images: &[Named]) -> Result<(Vec<Record>, Vec<Shortfall>)> {
        encode_records_reporting(self.model, images, &self.opts)
    }

    /// The archive of `images`, in memory.
    pub fn encode(&self, images: &[Named]) -> Result<Vec<u8>> {
        let mut w = self.writer(Vec::new(), images.len() as u64)?;
        for img in images {
            w.push(img.clone())?;
        }
        Ok(w.finish()?.0)
    }

    /// An archive of `count` images written to `out` as they are pushed: memory holds one
    /// pass of images (as many of one size as the model's budget holds) and the records of
    /// one block, whatever `count` is.
    pub fn writer<W: std::io::Write>(&self, out: W, count: u64) -> Result<EncodeWriter<'_, 'm, W>> {
        Ok(EncodeWriter {
            encoder: self,
            writer: ArchiveWriter::new(out, &self.header, count)?,
            pending: Vec::new(),
            seen: HashSet::new(),
            short: Vec::new(),
            encoded: 0,
            failed: false,
        })
    }
}

/// An archive being written by an [`Encoder`]: push images, then finish.
pub struct EncodeWriter<'e, 'm, W: std::io::Write> {
    encoder: &'e Encoder<'m>,
    writer: ArchiveWriter<W>,
    /// Images of one padded size waiting to go through the network together.
    pending: Vec<Named>,
    seen: HashSet<String>,
    short: Vec<Shortfall>,
    encoded: usize,
    /// An earlier call failed: records may be missing, so nothing more is written.
    failed: bool,
}

impl<W: std::io::Write> EncodeWriter<'_, '_, W> {
    /// Adds the next image. It is encoded with the images pushed before it once a pass is
    /// full (or the next image is of another padded size), so errors of the network may come
    /// from a later call; a name already stored, or one the format cannot store, is refused
    /// at once (and nothing is written).
    /// After a pass fails the archive is abandoned: every later call fails with
    /// [`Error::Abandoned`].
    pub fn push(&mut self, image: Named) -> Result<()> {
        if self.failed {
            return Err(Error::Abandoned);
        }
        if self.encoder.opts.names {
            // Before the pass is encoded, not when its record is written: a pass of large
            // images takes minutes.
            if let Err(reason) = rvq_archive::validate_name(&image.name) {
                return Err(Error::BadName {
                    name: image.name,
                    reason,
                });
            }
            if !self.seen.insert(image.name.clone()) {
                return Err(Error::DuplicateName { name: image.name });
            }
        }
        let model = self.encoder.model;
        let f = model.config.grid_factor;
        let size = padded(&image.image, f);
        if let Some(first) = self.pending.first() {
            let most =
                model.images_per_pass((size.0 * size.1) as u64, self.encoder.opts.batch_size);
            if padded(&first.image, f) != size || self.pending.len() >= most {
                self.flush()?;
            }
        }
        self.pending.push(image);
        Ok(())
    }

    /// Images written to the archive so far (pushed ones wait for their pass).
    pub fn encoded(&self) -> usize {
        self.encoded
    }

    fn flush(&mut self) -> Result<()> {
        // Set until the pass is written whole, so a failure anywhere in it sticks.
        self.failed = true;
        let (model, opts) = (self.encoder.model, &self.encoder.opts);
        let (records, missed) = encode_records_reporting(model, &self.pending, opts)?;
        self.short.extend(missed);
        for record in records {
            self.writer.write(&record)?;
            self.encoded += 1;
        }
        self.pending.clear();
        self.failed = false;
        Ok(())
    }

    /// Encodes what is pending and completes the archive (refused if fewer or more images
    /// were pushed than announced); returns `out` and the images a PSNR target was out of
    /// reach for.
    pub fn finish(mut self) -> Result<(W, Vec<Shortfall>)> {
        if self.failed {
            return Err(Error::Abandoned);
        }
        if !self.pending.is_empty() {
            self.flush()?;
        }
        Ok((self.writer.finish()?, self.short))
    }
}
