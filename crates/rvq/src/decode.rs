//! Archives back to images: checking an archive against the model, and decoding its records a
//! pass at a time under the model's memory budget, whole or streamed.

use std::collections::VecDeque;

use rvq_archive::{ArchiveReader, Header, Record};

use crate::budget;
use crate::error::{Error, Result};
use crate::image_io::Rgb;
use crate::model::{Model, hex};
use crate::restore;
use crate::scale;

/// A decoder: one model and a batch size.
pub struct Decoder<'m> {
    model: &'m Model,
    batch_size: usize,
}

impl<'m> Decoder<'m> {
    /// A decoder running `model` on up to `batch_size` images at a time (fewer where the
    /// model's memory budget holds fewer).
    pub fn new(model: &'m Model, batch_size: usize) -> Self {
        Self {
            model,
            batch_size: batch_size.max(1),
        }
    }

    /// Every image of the archive in `bytes`, with its stored name, after checking that the
    /// archive was made with this decoder's model. This holds every decoded image at once (3
    /// bytes a pixel, as many pixels as the archive claims, within the `limits` per image):
    /// for archives from untrusted sources, stream them with [`Decoder::images`].
    pub fn decode(
        &self,
        bytes: &[u8],
        limits: &rvq_archive::Limits,
    ) -> Result<Vec<(Option<String>, Rgb)>> {
        self.images(ArchiveReader::new(bytes, limits)?)?.collect()
    }

    /// `records` of an archive with `header` (made with this decoder's model) back to images,
    /// in passes of equal padded size under the model's memory budget. Each record is checked
    /// against the header first: one that does not fit is an error, not a panic.
    pub fn decode_records(&self, header: &Header, records: &[Record]) -> Result<Vec<Rgb>> {
        decode_records(self.model, header, records, self.batch_size)
    }

    /// The images of the archive `reader` reads, with their stored names, decoded a pass at
    /// a time as they are asked for: memory holds one block of records and one pass of
    /// images, whatever the archive says. Refused at once if the archive was made with
    /// another model; a damaged record ends the iteration with its error.
    pub fn images<R: std::io::Read>(&self, reader: ArchiveReader<R>) -> Result<Images<'_, R>> {
        check_header(reader.header(), self.model, "given")?;
        Ok(Images {
            decoder: self,
            header: reader.header().clone(),
            reader,
            ready: VecDeque::new(),
            carry: None,
            failed: None,
            done: false,
        })
    }
}

/// Decoded images and their stored names, streamed from an archive by [`Decoder::images`].
pub struct Images<'d, R: std::io::Read> {
    decoder: &'d Decoder<'d>,
    reader: ArchiveReader<R>,
    /// The reader's header, held apart so that records can be read while it is in use.
    header: Header,
    ready: VecDeque<(Option<String>, Rgb)>,
    /// A record read past the end of the last pass (of another size, or one too many).
    carry: Option<Record>,
    /// An error met while reading a pass, yielded once the images read before it are.
    failed: Option<Error>,
    done: bool,
}

impl<R: std::io::Read> Images<'_, R> {
    /// Reads the records of the next pass and decodes them; a read error ends the pass, and
    /// is kept for after its images.
    fn next_pass(&mut self) -> Result<()> {
        let model = self.decoder.model;
        let header = &self.header;
        let mut batch: Vec<Record> = self.carry.take().into_iter().collect();
        let f = model.config.grid_factor as u64;
        loop {
            let key = batch.first().map(|r| header.grid_of(r));
            if let Some((gw, gh)) = key {
                let pixels = gw.saturating_mul(gh).saturating_mul(f * f);
                let most = model.images_per_pass(pixels, self.decoder.batch_size);
                if batch.len() >= most {
                    break;
                }
            }
            match self.reader.next() {
                None => break,
                Some(Err(e)) => {
                    self.failed = Some(e.into());
                    break;
                }
                Some(Ok(r)) if key.is_some_and(|k| k != header.grid_of(&r)) => {
                    self.carry = Some(r);
                    break;
                }
                Some(Ok(r)) => batch.push(r),
            }
        }
        let images = decode_records(model, header, &batch, self.decoder.batch_size)?;
        self.ready = batch.into_iter().map(|r| r.name).zip(images).collect();
        Ok(())
    }
}

impl<R: std::io::Read> Iterator for Images<'_, R> {
    type Item = Result<(Option<String>, Rgb)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() && !self.done {
            if self.failed.is_none()
                && let Err(e) = self.next_pass()
            {
                // A read error met first is the cause; a decode error after it only follows.
                self.failed.get_or_insert(e);
            }
            self.done = self.ready.is_empty();
        }
        match self.ready.pop_front() {
            Some(image) => Some(Ok(image)),
            None => self.failed.take().map(Err),
        }
    }
}

impl Model {
    /// Checks that an archive with `header` was made with this model and uses between one and
    /// all of its codebooks; errors name the model `model_name`.
    pub fn check_header(&self, header: &Header, model_name: &str) -> Result<()> {
        check_header(header, self, model_name)
    }
}

fn check_header(h: &Header, model: &Model, model_name: &str) -> Result<()> {
    if h.fingerprint != model.fingerprint {
        let cited = hex(&h.fingerprint);
        return Err(Error::ModelMismatch {
            model: model_name.to_string(),
            reason: format!(
                "the archive was made with model {cited}{} but this model is {}",
                Model::retired_built_in(&cited).map_or(String::new(), |what| format!(", {what},")),
                hex(&model.fingerprint)
            ),
        });
    }
    if h.geometry() != model.config.geometry() {
        return Err(Error::ModelMismatch {
            model: model_name.to_string(),
            reason: "the archive's codebook geometry differs from the model's".into(),
        });
    }
    // After the model checks, so that another model's archive is reported as such.
    model.check_depth(h.codebooks_used as usize)
}

/// Decodes records (all made with `model`) back to images, in batches of equal padded size.
pub(crate) fn decode_records(
    model: &Model,
    header: &Header,
    records: &[Record],
    batch_size: usize,
) -> Result<Vec<Rgb>> {
    // A header made for another model, or a record that does not fit it, would fail deep
    // inside the network, as a panic.
    check_header(header, model, "given")?;
    for (i, r) in records.iter().enumerate() {
        rvq_archive::check_record(header, i as u64, r).map_err(|e| Error::BadIndices {
            reason: match e {
                rvq_archive::ArchiveError::Unwritable { reason, .. } => {
                    format!("a {}×{} record: {reason}", r.width, r.height)
                }
                other => other.to_string(),
            },
        })?;
    }
    let f = model.config.grid_factor as u64;
    let m = header.codebooks_used as usize;
    let mut out = Vec::with_capacity(records.len());
    let key = |r: &Record| header.grid_of(r);
    let pass = |&(gw, gh): &(u64, u64)| {
        let pixels = gw.saturating_mul(gh).saturating_mul(f * f);
        model.images_per_pass(pixels, batch_size)
    };
    for batch in budget::batches(records, pass, key) {
        let (gw, gh) = key(&batch[0]);
        let (indices, depths): (Vec<Vec<u32>>, Vec<Vec<u8>>) = batch
            .iter()
            .map(|r| (r.full_indices(header), r.cell_depths(header)))
            .unzip();
        let mixed = batch.iter().any(|r| r.has_depth_map(header));
        let sizes: Vec<(u32, u32)> = batch.iter().map(Record::coded_size).collect();
        let images = model.decode_images(
            &indices,
            mixed.then_some(depths.as_slice()),
            (gh as usize, gw as usize),
            m,
            &sizes,
        )?;
        out.extend(images.into_iter().zip(batch).map(|(image, r)| {
            let image = match &r.filter {
                Some(filter) => restore::apply(image, filter),
                None => image,
            };
            if r.half {
                scale::upsample(&image, r.width, r.height)
            } else {
                image
            }
        }));
    }
    Ok(out)
}
