//! A PSNR target met by decoding. Rate control's tables predict each cell's error from decodes
//! at uniform depths (or estimates); neighbours at other depths change it a little, so the
//! depths picked are checked against each image's decode and tightened where one falls short.
//! With restoration filters the check is of the image as the decoder will write it, filtered,
//! and an image that meets the target is tried once at a target lower by what its filter adds:
//! without that, the filter lifts every image above the target on bits it did not need.

use super::{Chosen, Distortion, Target, decoded_psnrs, filter_lambda};
use crate::error::Result;
use crate::image_io::Rgb;
use crate::model::Model;
use crate::quantizer::EncodedBatch;
use crate::restore;

/// Aimed above the target the filter's gain leaves: the gain is measured at the depths that
/// met the target, and at fewer depths the filter gains a little less.
const MARGIN: f64 = 0.05;

/// Times a lowered aim that falls short is raised by the shortfall before the image goes back
/// to the depths that met the target: each is a decode of the batch.
const RAISES: u8 = 2;

/// Where an image stands in [`meet`].
enum Step {
    /// Checked against the target until it meets it.
    Checking,
    /// Met the target at `best` (`filter`: with its filter), `bytes` in all; now tried at
    /// depths lower by what its filter adds, the aim raised `raised` times so far.
    Lowered {
        best: Vec<u8>,
        filter: bool,
        bytes: f64,
        raised: u8,
    },
    /// Settled, with its filter or without.
    Done(bool),
}

/// `depths` (picked from `tables` for the target `db`) checked and moved until every image
/// meets `db` as written, or has every codebook and is returned in the
/// [`Missed`](super::Missed) list. With `filters`, an image that meets the target is tried once
/// at depths lower by what its filter adds, and keeps whichever of the two meets it in fewer
/// bytes (indices at the model's bits each, and the filter's), without its filter where the
/// decode alone meets it; and the choice says whether each image is to be written with one.
pub(super) fn meet(
    model: &Model,
    originals: &[&Rgb],
    encoded: &EncodedBatch,
    (m, db): (usize, f64),
    tables: &[Distortion],
    mut depths: Vec<Vec<u8>>,
    filters: bool,
) -> Result<Chosen> {
    let (gh, gw) = encoded.grid;
    let search = Search {
        db,
        m,
        cells: gh * gw,
        bits: model.config.bits_per_index(),
        filters,
    };
    let mut aim = vec![db; originals.len()];
    let mut steps: Vec<Step> = (0..originals.len()).map(|_| Step::Checking).collect();
    let mut missed = Vec::new();
    loop {
        let at = encoded.at_depths(&depths);
        let psnrs = written_psnrs(model, originals, &at, &depths, m, filters)?;
        let mut settled = true;
        for (i, &measured) in psnrs.iter().enumerate() {
            let image = (&mut steps[i], &mut depths[i], &mut aim[i]);
            match search.step(image, &tables[i], measured) {
                Some(true) => settled = false,
                Some(false) => {}
                None => missed.push((i, measured.1)),
            }
        }
        if settled {
            missed.sort_by_key(|&(i, _)| i);
            let wanted = steps.iter().map(|s| matches!(s, Step::Done(true)));
            return Ok((depths, missed, filters.then(|| wanted.collect())));
        }
    }
}

/// What [`meet`] holds for every image.
struct Search {
    db: f64,
    m: usize,
    cells: usize,
    bits: u32,
    filters: bool,
}

impl Search {
    /// Bytes of an image at `depths`, with a filter of `filter` bytes.
    fn cost(&self, depths: &[u8], filter: usize) -> f64 {
        let indices: f64 = depths.iter().map(|&v| v as f64).sum();
        indices * self.bits as f64 / 8.0 + filter as f64
    }

    /// One image's next step, its decode at `depths` measured (PSNR without its filter, as
    /// written, and the filter's bytes): whether its depths moved (to be decoded again), or
    /// `None` where it falls short with every codebook.
    fn step(
        &self,
        (step, depths, aim): (&mut Step, &mut Vec<u8>, &mut f64),
        table: &Distortion,
        (plain, got, filter): (f64, f64, usize),
    ) -> Option<bool> {
        let db = self.db;
        // The cheaper way this decode meets the target: without the filter where it can.
        let here = (got >= db).then(|| match plain >= db {
            true => (false, self.cost(depths, 0)),
            false => (true, self.cost(depths, filter)),
        });
        match (&mut *step, here) {
            (Step::Done(_), _) => Some(false),
            (Step::Checking, Some((with, bytes))) => {
                *step = Step::Done(with);
                if !(self.filters && got > plain) {
                    return Some(false);
                }
                *aim = db - (got - plain) + MARGIN;
                let lower = table.for_psnr(*aim, self.bits);
                if lower == *depths {
                    return Some(false);
                }
                let best = std::mem::replace(depths, lower);
                let filter = with;
                *step = Step::Lowered {
                    best,
                    filter,
                    bytes,
                    raised: 0,
                };
                Some(true)
            }
            // Both meet the target: the fewer bytes.
            (Step::Lowered { bytes, .. }, Some((with, here))) if here < *bytes => {
                *step = Step::Done(with);
                Some(false)
            }
            (Step::Lowered { raised, .. }, None) if *raised < RAISES => {
                *raised += 1;
                *aim += (db - got).max(0.05);
                *depths = table.for_psnr(*aim, self.bits);
                Some(true)
            }
            (Step::Lowered { best, filter, .. }, _) => {
                *depths = std::mem::take(best);
                *step = Step::Done(*filter);
                Some(false)
            }
            (Step::Checking, None) if depths.iter().all(|&d| d as usize == self.m) => {
                *step = Step::Done(got > plain);
                None
            }
            (Step::Checking, None) => {
                // Aim higher by the shortfall; after a few tries, every codebook.
                *aim += (db - got).max(0.05);
                *depths = if *aim > db + 3.0 {
                    vec![self.m as u8; self.cells]
                } else {
                    table.for_psnr(*aim, self.bits)
                };
                Some(true)
            }
        }
    }
}

/// Each image's PSNR as `at` decodes at `depths`, without its restoration filter and with it
/// (where `filters` and one pays for its bytes at rate control's price), and the filter's bytes.
fn written_psnrs(
    model: &Model,
    originals: &[&Rgb],
    at: &EncodedBatch,
    depths: &[Vec<u8>],
    m: usize,
    filters: bool,
) -> Result<Vec<(f64, f64, usize)>> {
    if !filters {
        let psnrs = decoded_psnrs(model, originals, at, Some(depths), m)?;
        return Ok(psnrs.into_iter().map(|p| (p, p, 0)).collect());
    }
    let sizes: Vec<(u32, u32)> = originals.iter().map(|o| (o.width(), o.height())).collect();
    let decoded = model.decode_images(&at.indices, Some(depths), at.grid, m, &sizes)?;
    let n_q = model.config.num_codebooks;
    let target = Some(Target::Psnr(0.0));
    Ok(originals
        .iter()
        .zip(decoded)
        .zip(depths)
        .map(|((original, decode), d)| {
            let plain = crate::eval::image_psnr(original, &decode);
            match restore::fit(original, &decode, filter_lambda(target, d, m, n_q)) {
                Some((filter, out)) => {
                    let got = crate::eval::image_psnr(original, &out);
                    (plain, got, filter.stored_len())
                }
                None => (plain, plain, 0),
            }
        })
        .collect())
}
