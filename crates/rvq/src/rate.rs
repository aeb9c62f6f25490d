//! Rate control: how many codebooks each cell of an image uses. Given each cell's squared
//! error at every depth ([`RateSearch`]: decoded at each, estimated through the linear path, or
//! read off the latent residual), the encoder picks,
//! cell by cell, the depth that minimises D + λ·R, R the bits of the cell's indices. A
//! larger λ buys fewer bits at more error; `--quality` maps to λ, `--psnr` searches for the
//! largest λ whose estimated error still reaches the target. Every decode goes through the
//! model's passes, under its memory budget.

use burn::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::image_io::Rgb;
use crate::linear::{self, Drawing};
use crate::model::{Model, latents_to_rows};
use crate::quantizer::EncodedBatch;
use crate::quantizer::float_vec;

mod psnr;

/// What the encoder aims for, when not a fixed number of codebooks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// 0..=100: higher is larger and better; at 100 each cell gets the depth with the least
    /// error, whatever it costs (often all the codebooks; fewer where more do not help).
    Quality(u8),
    /// The fewest bits whose PSNR (dB, over the image's 8-bit RGB values) reaches this.
    Psnr(f64),
}

/// How many bytes an encode spends: every cell at one depth, or each cell's depth chosen by
/// rate–distortion for a quality or a PSNR, up to a most. The depth an archive's header states
/// is [`Rate::codebooks`]: the fixed depth, or the most a cell may use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Every cell uses the first this-many codebooks.
    Codebooks(usize),
    /// Quality 0..=100 (larger and better as it rises): each cell gets the codebooks worth
    /// their bits, at most `max_codebooks` (`None`: the model's all).
    Quality {
        /// 0..=100.
        quality: u8,
        /// The most codebooks a cell may use.
        max_codebooks: Option<usize>,
    },
    /// Each image gets the fewest bytes whose PSNR (dB, over its 8-bit RGB values) reaches
    /// `db`, cells using at most `max_codebooks` (an image the model cannot bring there gets
    /// them all and is reported).
    Psnr {
        /// The PSNR to reach, in dB.
        db: f64,
        /// The most codebooks a cell may use.
        max_codebooks: Option<usize>,
    },
}

/// The quality an encode uses unless told otherwise: measured on the photographs in
/// `samples/` (docs/RESULTS.md), it stays within 0.1 dB of every cell at every codebook for
/// about 16% fewer bytes.
pub const DEFAULT_QUALITY: u8 = 90;

impl Default for Rate {
    /// Quality [`DEFAULT_QUALITY`] with every codebook available.
    fn default() -> Self {
        Rate::Quality {
            quality: DEFAULT_QUALITY,
            max_codebooks: None,
        }
    }
}

impl Rate {
    /// The depth of the archive for a model of `n_q` codebooks: the fixed depth, or the most a
    /// cell may use.
    pub fn codebooks(&self, n_q: usize) -> usize {
        match *self {
            Rate::Codebooks(m) => m,
            Rate::Quality { max_codebooks, .. } | Rate::Psnr { max_codebooks, .. } => {
                max_codebooks.unwrap_or(n_q)
            }
        }
    }

    /// What rate control aims for; `None` at a fixed depth.
    pub fn target(&self) -> Option<Target> {
        match *self {
            Rate::Codebooks(_) => None,
            Rate::Quality { quality, .. } => Some(Target::Quality(quality)),
            Rate::Psnr { db, .. } => Some(Target::Psnr(db)),
        }
    }

    /// Refuses what no encode can aim for: a quality above 100, a PSNR that is not a
    /// positive number of dB. (Depths are checked against the model.)
    pub fn check(&self) -> Result<()> {
        match self.target() {
            Some(Target::Quality(q)) if q > 100 => {
                Err(Error::InvalidTarget(format!("quality {q} is above 100")))
            }
            Some(Target::Psnr(db)) if !(db.is_finite() && db > 0.0) => Err(Error::InvalidTarget(
                format!("PSNR {db} dB is not a positive number of dB"),
            )),
            _ => Ok(()),
        }
    }
}

/// Squared errors of one image's cells at each depth: `sse[cell · m + (depth − 1)]`, in units
/// of values on [0, 1] summed over the cell's pixels and channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Distortion {
    /// Codebooks the table covers (depths 1..=m).
    pub m: usize,
    /// Cells per grid row.
    pub columns: usize,
    /// The table, cell-major.
    pub sse: Vec<f64>,
    /// Values (pixels × 3) in the image, for PSNR.
    pub values: f64,
}

/// The price of a bit a restoration filter is fitted at for an image at `depths` (one per cell;
/// empty: every cell at `m`) of a model of `n_q` codebooks: a quality's λ; at a fixed depth or
/// a PSNR target, that of the quality 100 · (the image's mean depth) / n_q, whose cells average
/// about that depth on the photographs of samples/ (docs/RESULTS.md): a filter that would add a
/// fifth to an image at one codebook is not worth its bytes there.
pub(crate) fn filter_lambda(target: Option<Target>, depths: &[u8], m: usize, n_q: usize) -> f64 {
    if let Some(Target::Quality(q)) = target {
        return lambda_for_quality(q);
    }
    let mean = if depths.is_empty() {
        m as f64
    } else {
        depths.iter().map(|&v| v as f64).sum::<f64>() / depths.len() as f64
    };
    lambda_for_quality((100.0 * mean / n_q as f64).round().min(100.0) as u8)
}

/// The λ (squared error per bit, values on [0, 1]) that quality `q` stands for: 0.3 at q = 0,
/// ten times smaller every 35 steps, 0 at q = 100. Chosen so that qualities 0..100 span the
/// shipped model's rates from about one codebook a cell to all (docs/RESULTS.md measures the
/// ladder).
pub fn lambda_for_quality(q: u8) -> f64 {
    if q >= 100 {
        0.0
    } else {
        0.3 * 10f64.powf(-(q as f64) / 35.0)
    }
}

impl Distortion {
    /// Cells in the table.
    pub fn cells(&self) -> usize {
        self.sse.len() / self.m.max(1)
    }

    /// The depths minimising squared error + λ·bits over the image, `bits` counting each
    /// cell's indices (`bits` per index) and an estimate of its depth-map code: about 1 bit
    /// for the depth of its left neighbour (above, in the first column), about 1 + log2(m − 1)
    /// for another (the map's adaptive coder, docs/FORMAT.md, pays roughly this). A
    /// dynamic programme along each grid row, rows top to bottom, finds the best depths
    /// under that estimate given the row above.
    pub fn choose(&self, lambda: f64, bits: u32) -> Vec<u8> {
        let m = self.m;
        let other = 1.0 + ((m.max(2) - 1) as f64).log2();
        let map_bits = |d: usize, ctx: Option<usize>| match ctx {
            _ if m == 1 => 0.0,
            Some(c) if c == d => 1.0,
            Some(_) => other,
            None => (m as f64).log2(),
        };
        let cell =
            |c: usize, d: usize| self.sse[c * m + d] + lambda * ((d + 1) * bits as usize) as f64;
        let columns = self.columns.max(1);
        let mut depths = vec![0u8; self.cells()];
        for row in 0..self.cells().div_ceil(columns) {
            let start = row * columns;
            let width = columns.min(self.cells() - start);
            let up = (row > 0).then(|| depths[start - columns] as usize - 1);
            // cost[d]: the best cost of the row so far ending at depth d + 1; from[i][d] its
            // predecessor.
            let mut cost: Vec<f64> = (0..m)
                .map(|d| cell(start, d) + lambda * map_bits(d, up))
                .collect();
            let mut from = vec![vec![0usize; m]; width];
            for (i, back) in from.iter_mut().enumerate().skip(1) {
                let next: Vec<f64> = (0..m)
                    .map(|d| {
                        let (best, p) = (0..m)
                            .map(|p| (cost[p] + lambda * map_bits(d, Some(p)), p))
                            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                            .expect("m ≥ 1");
                        back[d] = p;
                        best + cell(start + i, d)
                    })
                    .collect();
                cost = next;
            }
            let mut d = (0..m)
                .min_by(|&a, &b| cost[a].total_cmp(&cost[b]).then(a.cmp(&b)))
                .expect("m ≥ 1");
            for i in (0..width).rev() {
                depths[start + i] = d as u8 + 1;
                d = from[i][d];
            }
        }
        depths
    }

    /// The depths `target` asks for: [`Distortion::choose`] at a quality's λ, or
    /// [`Distortion::for_psnr`].
    pub fn pick(&self, target: Target, bits: u32) -> Vec<u8> {
        match target {
            Target::Quality(q) => self.choose(lambda_for_quality(q), bits),
            Target::Psnr(db) => self.for_psnr(db, bits),
        }
    }

    /// The table's squared error with each cell at `depths`.
    pub fn sse_at(&self, depths: &[u8]) -> f64 {
        self.sse
            .chunks_exact(self.m)
            .zip(depths)
            .map(|(row, &d)| row[d as usize - 1])
            .sum()
    }

    /// PSNR (dB) the table predicts for `depths`.
    pub fn psnr_at(&self, depths: &[u8]) -> f64 {
        psnr(self.sse_at(depths), self.values)
    }

    /// The depths of the largest λ whose predicted PSNR reaches `target_db` (every cell at m
    /// when none does), by bisection on log λ: the predicted error only grows with λ.
    pub fn for_psnr(&self, target_db: f64, bits: u32) -> Vec<u8> {
        let full = vec![self.m as u8; self.cells()];
        if self.psnr_at(&full) < target_db {
            return full;
        }
        let (mut lo, mut hi) = (-12f64, 2f64); // log10 λ: lo reaches the target, hi need not
        if self.psnr_at(&self.choose(10f64.powf(hi), bits)) >= target_db {
            return self.choose(10f64.powf(hi), bits);
        }
        for _ in 0..50 {
            let mid = (lo + hi) / 2.0;
            if self.psnr_at(&self.choose(10f64.powf(mid), bits)) >= target_db {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.choose(10f64.powf(lo), bits)
    }
}

/// PSNR (dB) of a squared error summed over `values` values on [0, 1].
pub fn psnr(sse: f64, values: f64) -> f64 {
    crate::eval::psnr(sse / values)
}

/// Each image's PSNR as `encoded` decodes (at `depths` per cell if given), written in 8 bits.
pub(crate) fn decoded_psnrs(
    model: &Model,
    originals: &[&Rgb],
    encoded: &EncodedBatch,
    depths: Option<&[Vec<u8>]>,
    m: usize,
) -> Result<Vec<f64>> {
    let errors = model.cell_errors(&encoded.indices, depths, encoded.grid, m, originals, false)?;
    Ok(errors
        .written
        .iter()
        .zip(originals)
        .map(|(e, img)| psnr(e.iter().sum(), img.pixels().len() as f64))
        .collect())
}

/// Fills `tables` with each cell's error (before rounding) as `encoded` decodes at each depth
/// 1..=m: m decodes of the batch.
pub(crate) fn decoded_tables(
    model: &Model,
    originals: &[&Rgb],
    encoded: &EncodedBatch,
    m: usize,
    tables: &mut [Distortion],
) -> Result<()> {
    for k in 1..=m {
        let at = encoded.at_depth(k);
        let errors = model.cell_errors(&at.indices, None, encoded.grid, k, originals, false)?;
        for (i, per) in errors.unrounded.into_iter().enumerate() {
            for (c, e) in per.into_iter().enumerate() {
                tables[i].sse[c * m + k - 1] = e;
            }
        }
    }
    Ok(())
}

/// Fills `tables` with each cell's error (before rounding) at each depth 1..=m from one decode,
/// each cell on its path for its `anchor` depth (every cell at m if `None`): at any other depth,
/// as [`linear::estimate`] estimates it from what that depth's path draws differently.
pub(crate) fn linear_tables(
    model: &Model,
    drawn: &Drawing,
    originals: &[&Rgb],
    encoded: &EncodedBatch,
    m: usize,
    anchor: Option<&[Vec<u8>]>,
    tables: &mut [Distortion],
) -> Result<()> {
    let patch = drawn.patch;
    // sums[depth · patch + j]: value j of a cell's patch as its path for `depth` draws it.
    let shift = |image: usize, cell: usize, moves: &mut [f32], sums: &mut Vec<f32>| {
        sums.resize((m + 1) * patch, 0.0);
        for depth in 1..=m {
            let (below, at) = sums.split_at_mut(depth * patch);
            let at = &mut at[..patch];
            // Summed in level order either way: a path that extends the last adds one entry.
            let start = if encoded.extends(image, cell, depth) {
                at.copy_from_slice(&below[(depth - 1) * patch..][..patch]);
                depth - 1
            } else {
                at.fill(0.0);
                0
            };
            for (level, e) in encoded.path(image, cell, depth).enumerate().skip(start) {
                let v = drawn.entry(level, e);
                at.iter_mut().zip(v).for_each(|(s, &v)| *s += v);
            }
        }
        let a = anchor.map_or(m, |d| d[image][cell] as usize);
        let base = &sums[a * patch..][..patch];
        for (depth, moved) in moves.chunks_exact_mut(patch).enumerate() {
            let at = &sums[(depth + 1) * patch..][..patch];
            for ((s, &v), &b) in moved.iter_mut().zip(at).zip(base) {
                *s = v - b;
            }
        }
    };
    // The decode is of each cell's path for its anchor depth.
    let at_anchor = anchor.map(|a| encoded.at_depths(a));
    let decoded = at_anchor.as_ref().unwrap_or(encoded);
    let est = linear::estimate(model, originals, (decoded, anchor, m), m, shift)?;
    for (table, errors) in tables.iter_mut().zip(est.variants) {
        table.sse = errors;
    }
    Ok(())
}

/// Fills `tables` with each cell's squared latent residual after each depth 1..=m: the
/// encoder's latent minus the entries `encoded` chose, summed over the latent's channels.
fn latent_tables(
    model: &Model,
    latents: &Tensor<4>,
    encoded: &EncodedBatch,
    m: usize,
    tables: &mut [Distortion],
) -> Result<()> {
    let books = float_vec(model.net.codebooks().ok_or(Error::NotQuantized)?);
    let [b, d, h, w] = latents.dims();
    let (cells, k) = (h * w, model.config.codebook_size);
    let rows = float_vec(latents_to_rows(latents.clone()));
    // Cell by cell on every thread, each cell's sums in the same order.
    let cells_of = |(i, table): (usize, &mut Distortion)| {
        let each = table.sse[..cells * m].par_chunks_mut(m.max(1)).enumerate();
        each.for_each_init(Vec::new, |residual: &mut Vec<f32>, (c, sse)| {
            let latent = &rows[(i * cells + c) * d..][..d];
            residual.clear();
            residual.extend_from_slice(latent);
            for depth in 1..=m {
                // Subtracted in level order either way: a path that extends the last one
                // subtracts its last entry only.
                let start = if encoded.extends(i, c, depth) {
                    depth - 1
                } else {
                    residual.copy_from_slice(latent);
                    0
                };
                for (level, entry) in encoded.path(i, c, depth).enumerate().skip(start) {
                    let vector = &books[(level * k + entry as usize) * d..][..d];
                    residual.iter_mut().zip(vector).for_each(|(r, v)| *r -= v);
                }
                sse[depth - 1] = residual.iter().map(|&r| f64::from(r).powi(2)).sum();
            }
        });
    };
    tables.par_iter_mut().take(b).enumerate().for_each(cells_of);
    Ok(())
}

/// Adds to every entry of `tables` what rounding to 8 bits adds to a cell's error: the
/// tables hold errors before rounding, and what is written is rounded, which adds about a
/// twelfth of a level squared to each value (the rounding error is near uniform and near
/// independent of the error itself). Spread evenly over the cells, a constant per cell moves
/// no depth choice, only the PSNR a target is checked against.
fn rounding_added(tables: &mut [Distortion]) {
    for t in tables {
        let per_cell = t.values / (12.0 * 255.0 * 255.0) / t.cells().max(1) as f64;
        t.sse.iter_mut().for_each(|v| *v += per_cell);
    }
}

/// An image rate control could not bring to a PSNR target: its place in the batch, and the
/// PSNR it got.
pub(crate) type Missed = (usize, f64);

/// What [`choose_depths`] chose: each image's depths per cell, the images a PSNR target was out
/// of reach for, and under a PSNR target with filters, whether each image is to be written with
/// its restoration filter (`None`: as the filter's own price decides).
pub(crate) type Chosen = (Vec<Vec<u8>>, Vec<Missed>, Option<Vec<bool>>);

/// How rate control measures each cell's error at each depth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateSearch {
    /// Decode the batch at every depth 1..=m and measure the pixels: exact, and m decodes of
    /// every batch (the enum's default; the default effort uses [`RateSearch::Linear`]).
    #[default]
    Decoded,
    /// The residual the codebooks leave in the encoder's latent space, taken as the pixel
    /// error: no decode at all. The linear path maps latents to pixels nearly as an isometry,
    /// so the two are close; how close, and what it costs at equal bits, docs/BENCHMARKS.md
    /// ("Rate search in the latent space") measures.
    Latent,
    /// Choose as [`RateSearch::Latent`] does; then decode at the depths chosen, estimate each
    /// depth's pixels as that decode plus what the entries added or dropped draw through the
    /// decoder's linear path (the convolutional branch's share of the difference left out,
    /// [`crate::linear`]), and choose again: one decode of every batch, which sees what the
    /// latent residual cannot (a cell whose pixels a deeper entry makes worse). A model
    /// without the linear path decodes at every depth instead.
    Linear,
}

/// Measures each cell's error at every depth 1..=m as `search` says (decoding at each,
/// estimating through the linear path, or reading the latent residuals), each depth on its own
/// path ([`EncodedBatch::path`]), then picks the depths the target asks for. For a PSNR target
/// the pick is checked by decoding it (with `filters`, filtered as it will be written, and tried
/// lower by what the filter adds: `psnr.rs`), and tightened (up to every codebook) while an
/// image falls short; images that do not reach the target even then are returned by their
/// place in the batch, with the PSNR they got.
pub(crate) fn choose_depths(
    model: &Model,
    originals: &[&Rgb],
    encoded: &EncodedBatch,
    m: usize,
    target: Target,
    (search, filters): (RateSearch, bool),
    latents: &Tensor<4>,
) -> Result<Chosen> {
    let (gh, gw) = encoded.grid;
    let bits = model.config.bits_per_index();
    let mut tables: Vec<Distortion> = originals
        .iter()
        .map(|img| Distortion {
            m,
            columns: gw,
            sse: vec![0.0; gh * gw * m],
            values: img.pixels().len() as f64,
        })
        .collect();
    match (search, Drawing::of(model)) {
        (RateSearch::Latent, _) => latent_tables(model, latents, encoded, m, &mut tables)?,
        (RateSearch::Linear, Some(drawn)) => {
            // Estimates are best near the depths decoded: choose in the latent space, then
            // decode at the depths chosen and estimate every depth around them. (A first
            // round decoded at the deepest depth instead gained 0.02–0.07 dB for a decode
            // more; a third round measured no better: docs/BENCHMARKS.md.) The second round
            // replaces the first's tables whole.
            latent_tables(model, latents, encoded, m, &mut tables)?;
            rounding_added(&mut tables);
            let anchor: Vec<Vec<u8>> = tables.iter().map(|t| t.pick(target, bits)).collect();
            let anchor = Some(anchor.as_slice());
            linear_tables(model, &drawn, originals, encoded, m, anchor, &mut tables)?;
        }
        _ => decoded_tables(model, originals, encoded, m, &mut tables)?,
    }
    rounding_added(&mut tables);
    let depths: Vec<Vec<u8>> = tables.iter().map(|t| t.pick(target, bits)).collect();
    let Target::Psnr(db) = target else {
        return Ok((depths, Vec::new(), None));
    };
    psnr::meet(model, originals, encoded, (m, db), &tables, depths, filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_states_its_depth_and_target_and_refuses_what_no_encode_can_aim_for() {
        assert_eq!(Rate::default().codebooks(8), 8);
        assert_eq!(
            Rate::default().target(),
            Some(Target::Quality(DEFAULT_QUALITY))
        );
        assert_eq!(Rate::Codebooks(3).codebooks(8), 3);
        assert_eq!(Rate::Codebooks(3).target(), None);
        let psnr = Rate::Psnr {
            db: 30.0,
            max_codebooks: Some(4),
        };
        assert_eq!(
            (psnr.codebooks(8), psnr.target()),
            (4, Some(Target::Psnr(30.0)))
        );
        let quality = |quality| Rate::Quality {
            quality,
            max_codebooks: None,
        };
        assert!(quality(100).check().is_ok() && quality(101).check().is_err());
        for db in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let bad = Rate::Psnr {
                db,
                max_codebooks: None,
            };
            assert!(matches!(bad.check(), Err(Error::InvalidTarget(_))), "{db}");
        }
    }

    /// Two cells, m = 3: a flat one that gains nothing past depth 1, a busy one that gains
    /// at every depth.
    fn table() -> Distortion {
        Distortion {
            m: 3,
            columns: 2,
            sse: vec![0.10, 0.099, 0.098, 2.0, 1.0, 0.4],
            values: 2.0 * 192.0,
        }
    }

    #[test]
    fn flat_cells_stop_early_and_busy_ones_go_deep() {
        let t = table();
        assert_eq!(t.choose(0.0, 10), vec![3, 3]);
        assert_eq!(t.choose(0.001, 10), vec![1, 3]);
        assert_eq!(t.choose(0.07, 10), vec![1, 2]);
        assert_eq!(t.choose(10.0, 10), vec![1, 1]);
    }

    #[test]
    fn the_depth_map_cost_evens_out_near_ties() {
        // A row of four cells, m = 3 (a change of depth costs 2 map bits, keeping it 1). At
        // λ = 0.01 a codebook's 10 bits cost 0.1: the third cell gains 0.09 from its second,
        // not enough alone, but dropping it among neighbours at depth 2 costs two changes.
        let t = Distortion {
            m: 3,
            columns: 4,
            sse: [
                [0.5, 0.0, 0.0],
                [0.5, 0.0, 0.0],
                [0.09, 0.0, 0.0],
                [0.5, 0.0, 0.0],
            ]
            .concat(),
            values: 4.0 * 192.0,
        };
        assert_eq!(t.choose(0.01, 10), vec![2, 2, 2, 2]);
        // Among neighbours at depth 1, a gain of 0.101 pays its index bits (0.1) but not the
        // two changes of depth around it.
        let t = Distortion {
            sse: [
                [0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0],
                [0.101, 0.0, 0.0],
                [0.0, 0.0, 0.0],
            ]
            .concat(),
            ..t
        };
        assert_eq!(t.choose(0.01, 10), vec![1, 1, 1, 1]);
    }

    #[test]
    fn depths_fall_as_lambda_and_quality_fall() {
        let t = table();
        let mut last = u32::MAX;
        for q in (0..=100).rev() {
            let bits: u32 = t
                .choose(lambda_for_quality(q), 10)
                .iter()
                .map(|&d| d as u32)
                .sum();
            assert!(bits <= last, "q = {q}");
            last = bits;
        }
        assert_eq!(t.choose(lambda_for_quality(100), 10), vec![3, 3]);
    }

    #[test]
    fn psnr_targets_are_met_with_the_fewest_codebooks() {
        let t = table();
        for target in [20.0, 25.0, 28.0] {
            let d = t.for_psnr(target, 10);
            assert!(t.psnr_at(&d) >= target, "{target}: {d:?}");
        }
        // Out of reach: every cell at m.
        assert_eq!(t.for_psnr(60.0, 10), vec![3, 3]);
        // 25 dB needs sse ≤ 1.214: [1, 2] (1.1) does it, [1, 1] (2.1) does not.
        assert_eq!(t.for_psnr(25.0, 10), vec![1, 2]);
    }
}
